"""The split_jsonl stage's options (config section `split`), and the names of its splits and formats."""

from __future__ import annotations

from dataclasses import dataclass

from .options import from_config

SPLITS = ("train", "valid", "test")
FORMATS = ("text", "completions", "chat")


@dataclass(frozen=True)
class SplitOptions:
    seed: int = 42
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    near_duplicate_threshold: float = 0.7
    probe_fraction: float = 0.5
    unseen_fraction: float = 0.1
    valid_probe_fraction: float = 0.0
    keep_conflicts: bool = False
    format: str = "chat"
    system_prompt: str = ""
    continuation_prompt: str = "Continua este texto sobre o SC Farense:"

    from_config = classmethod(from_config)

    @property
    def fractions(self) -> dict[str, float]:
        return {
            "train": 1.0 - self.valid_fraction - self.test_fraction,
            "valid": self.valid_fraction,
            "test": self.test_fraction,
        }
