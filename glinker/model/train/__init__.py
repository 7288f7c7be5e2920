"""Training the bi-encoder: focal loss, negative and label sampling, schedules, checkpoints with resume."""

from glinker.model.train.config import TrainConfig, load_train_config

__all__ = ["TrainConfig", "Trainer", "load_train_config"]


def __getattr__(name: str):
    if name == "Trainer":
        from glinker.model.train.trainer import Trainer

        return Trainer
    raise AttributeError(name)
