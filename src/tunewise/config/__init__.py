"""Run configuration: `load_config(path, overrides)` returns a checked `RunConfig`.

`schema.py` holds the sections (small dataclasses, rules in field metadata); `load.py` reads YAML,
dicts and overrides into them and reports every problem with file, line and key at once.
"""

from tunewise.config.load import load_config
from tunewise.config.schema import *  # noqa: F403  (the sections and their choice tuples)
from tunewise.config.schema import ConfigError, RunConfig
from tunewise.core.rundir import dump_config  # the run directory's writer, re-exported

__all__ = ["ConfigError", "RunConfig", "dump_config", "load_config"]
