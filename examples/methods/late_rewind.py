"""IMP with late rewinding: after each pruning round, rewind the surviving weights to where the first fine-tune
was after k steps, not to the pretrained weights (Frankle et al., 2020, "Linear mode connectivity and the lottery
ticket hypothesis")."""

from mte.errors import MteError
from mte.hparams import MethodHparams
from mte.methods import Method, Param, Seed, Step, imp, register


@register
class LateRewindLT(Method):
    name = "late-lt"
    label = "LATE-LT"
    reads = ("sparsity", "rounds", "rewind_head")  # MethodHparams fields that change its result
    params = (Param("rewind_steps", 10, "Late rewinding: optimizer steps of the first fine-tune to rewind to."),)
    prunes = True  # its members are sparse tickets: the report compares their masks

    def fine_tunes(self, seed: Seed) -> list[Step]:
        # the IMP rounds and the ticket of BASE-LT, each started from the weights after k steps
        return imp(seed, rewind_steps=seed.param("rewind_steps"))

    def check(self, hp: MethodHparams, seed: int) -> None:
        if hp.param(self, "rewind_steps") < 1:
            raise MteError("--rewind-steps must be >= 1 (0 is BASE-LT)")
