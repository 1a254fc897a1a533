"""Reading a config file: a missing file or a config that does not parse ends in one message naming the file."""
import os.path as osp
from typing import Optional

from mmengine.config import Config


class ConfigError(ValueError):
    """A config that cannot be read, or cannot be used as it is."""


def read_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    """``Config.fromfile(config)`` with ``cfg_options`` merged; :class:`ConfigError` when the file (or one it
    inherits) is missing, has a syntax error or fails when it runs (an undefined name, a bad import)."""
    if not osp.isfile(config) and '::' not in config:
        raise ConfigError(f'{config}: no such config file.')
    try:
        cfg = Config.fromfile(config)
    except SyntaxError as err:
        raise ConfigError(f'{config} (or a config it inherits) has a syntax error: {err}') from err
    except FileNotFoundError as err:
        raise ConfigError(f'{config} inherits a config that does not exist: {err}') from err
    except (NameError, ImportError, TypeError, AttributeError, KeyError) as err:
        raise ConfigError(f'{config} (or a config it inherits) cannot be read: {type(err).__name__}: {err}') from err
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg
