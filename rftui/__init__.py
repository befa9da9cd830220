"""rftui: fine-tune many LLM configurations concurrently, from the terminal.

The names RapidFire AI users already write are importable from here; `Experiment` is
imported lazily so that `import rftui` stays light (no torch until training starts).
"""
from rftui.config.knobs import (
    List, Range, RFGridSearch, RFLoraConfig, RFModelConfig, RFRandomSearch, RFSFTConfig,
)

__all__ = [
    "Experiment", "List", "Range", "RFGridSearch", "RFLoraConfig", "RFModelConfig",
    "RFRandomSearch", "RFSFTConfig",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Experiment":
        from rftui.api import Experiment

        return Experiment
    raise AttributeError(f"module 'rftui' has no attribute {name!r}")
