"""Lightning callbacks that record what training did, for tests.

Kept out of ``conftest.py``: importing Lightning there, before pytest's logging capture is set up, makes Lightning
stop its logger from propagating (it does so when the root logger has no handler yet), and ``caplog`` then sees
none of its messages.
"""

from lightning.pytorch.callbacks import Callback


class LearningRates(Callback):
    """Records the learning rate of each training step (the optimizer's last parameter group: the head's)."""

    def __init__(self):
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[-1]["lr"])
