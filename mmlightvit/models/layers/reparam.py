"""Structural re-parameterisation of a whole model for deployment."""
import torch
import torch.nn as nn


def _fusable(module: nn.Module) -> bool:
    return callable(getattr(module, 'fuse', None))


@torch.no_grad()
def fuse_model(model: nn.Module) -> nn.Module:
    """Replace every module that has a ``fuse()`` method by what ``fuse()`` returns, bottom-up, and return the model.

    Works on a backbone alone or on a whole detector / segmentor / classifier that contains one. Children are
    fused before their parents, so a composite module (e.g. RepViT's RepVGG depthwise token mixer) folds
    children that are already plain convs. If ``model`` itself has ``fuse()``, its result is returned, so always
    use the return value: ``model = fuse_model(model)``.

    The folded modules compute what the originals compute in eval mode (BatchNorm running statistics), so call
    ``model.eval()`` before using the result; folding is done in float64 and cast back to each layer's dtype.
    """
    for name, child in list(model.named_children()):
        fused = fuse_model(child)
        if fused is not child:
            setattr(model, name, fused)
    if _fusable(model):
        fused = model.fuse()
        if isinstance(fused, nn.Module):
            fused.train(model.training)
            return fused
    return model
