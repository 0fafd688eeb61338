"""Learning rules: eligibility-trace plug-ins that write gradient estimates into ``p.grad``."""
from .alignment import alignment, exact_gradient, rule_alignment, rule_estimate
from .base import RULES, Alignment, Rule, accumulate_grad
from .bptt import BPTT, SurrogateGradient

__all__ = ["RULES", "Rule", "Alignment", "accumulate_grad", "BPTT", "SurrogateGradient",
           "alignment", "exact_gradient", "rule_alignment", "rule_estimate"]
