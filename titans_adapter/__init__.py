"""titans-adapter: give a frozen open-weight LLM a Titans long-term neural memory."""

from .config import ConfigError, TitansConfig
from .generation import GenerateOutput, MemoryStateError
from .memory import LayerMemoryState, NeuralMemory
from .models import ModelLoadError, UnsupportedModelError, load_base_model
from .retrofit import AdapterError, TitansModel, TitansOutput, load_adapter, retrofit
from .state import MemoryState

__all__ = [
    "AdapterError",
    "ConfigError",
    "GenerateOutput",
    "LayerMemoryState",
    "MemoryState",
    "MemoryStateError",
    "ModelLoadError",
    "NeuralMemory",
    "TitansConfig",
    "TitansModel",
    "TitansOutput",
    "UnsupportedModelError",
    "load_adapter",
    "load_base_model",
    "retrofit",
]
