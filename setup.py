from setuptools import find_packages, setup

setup(
    name='mmlightvit',
    version='0.1.0',
    description='Lightweight vision backbones (RepViT, EdgeNeXt, FasterViT, TransNeXt) for OpenMMLab 2.x '
    'detection and segmentation',
    packages=find_packages(include=['mmlightvit', 'mmlightvit.*']),
    # The configs and tools travel with the package (mmlightvit/.mim links to configs/, tools/ and model-index.yml; a
    # wheel gets copies) so that other projects can inherit the configs as 'mmlightvit::<family>/<config>.py' and
    # mim finds the tools ('mim train mmlightvit CONFIG').
    package_data={'mmlightvit': ['.mim/model-index.yml', '.mim/configs/**/*.py', '.mim/configs/**/*.yml',
                                 '.mim/tools/**/*.py', '.mim/tools/*.sh']},
    python_requires='>=3.9',
    # The backbones need only torch and mmengine (torch >= 2.6 for the allowlisted weights-only loading); the
    # detection/segmentation stack is pinned in requirements/runtime.txt.
    install_requires=['torch>=2.6', 'mmengine>=0.10'],
    zip_safe=False,
)
