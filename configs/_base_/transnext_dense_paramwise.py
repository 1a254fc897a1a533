# TransNeXt's parameter groups for DINO and Mask2Former fine-tuning: the official custom keys (detection/dino and
# segmentation/mask2former configs) with the official module names translated to this project's (patch_embed1 ->
# stem, patch_embed{i} -> stages.{i-1}.patch_embed, block{i}.{j} -> stages.{i-1}.blocks.{j}, norm{i} ->
# stages.{i-1}.norm; names inside a block are the official ones). The backbone trains at lr x0.1, without weight
# decay on the query embedding, local position bias, CPB MLP, temperature, biases and norms. mmengine matches
# custom keys by substring, longest first, and a matched parameter takes only its key's multipliers. As with the
# official keys, the last stage's patch embedding and output norm (official patch_embed4 / norm4, here
# stages.3.patch_embed / stages.3.norm) match no key: they train at the full lr, under the paramwise_cfg's
# bias / norm decay multipliers (0). Block keys cover up to 23 blocks per stage (Base's deepest); keys of blocks
# an arch does not have match nothing. Configs use these as
# paramwise_cfg=dict(custom_keys={{_base_.transnext_custom_keys}}, bias_decay_mult=0, norm_decay_mult=0, ...).
transnext_custom_keys = {
    **{key: dict(lr_mult=0.1, decay_mult=0.)
       for key in ('attn.query_embedding', 'relative_pos_bias_local', 'cpb', 'temperature', 'attn.norm')},
    'attn.learnable': dict(lr_mult=0.1),
    **{f'{layer}.{kind}': dict(lr_mult=0.1) if kind == 'weight' else dict(lr_mult=0.1, decay_mult=0.)
       for layer in ('attn.q', 'attn.kv', 'attn.qkv', 'attn.sr', 'attn.proj', 'mlp.fc1', 'mlp.fc2',
                     'mlp.dwconv.dwconv')
       for kind in ('weight', 'bias')},
    **{f'{embed}.{part}': dict(lr_mult=0.1) if part == 'proj.weight' else dict(lr_mult=0.1, decay_mult=0.)
       for embed in ('backbone.stem', 'backbone.stages.1.patch_embed', 'backbone.stages.2.patch_embed')
       for part in ('norm', 'proj.weight', 'proj.bias')},
    **{f'backbone.stages.{stage}.norm': dict(lr_mult=0.1, decay_mult=0.) for stage in range(3)},
    **{f'backbone.stages.{stage}.blocks.{block}.norm': dict(lr_mult=0.1, decay_mult=0.)
       for stage in range(4) for block in range(23)},
}
# Mask2Former adds its decoder's query and level embeddings: full lr, no decay.
transnext_mask2former_custom_keys = {
    **transnext_custom_keys,
    **{f'decode_head.{name}': dict(lr_mult=1.0, decay_mult=0.)
       for name in ('query_embed', 'query_feat', 'level_embed')},
}
