"""Learning rules: eligibility-trace plug-ins that write gradient estimates into ``p.grad``."""
from .alignment import alignment, exact_gradient, rule_alignment, rule_estimate
from .base import RULES, Alignment, Rule, accumulate_grad
from .bptt import BPTT, SurrogateGradient
from .eprop import EProp
from .feedback import DFA, FA, Backprop, KolenPollack
from .learned_feedback import LearnedFeedback
from .node_perturbation import NodePerturbation
from .perturbation import ForwardGradient, SingleStepNodePerturbation, WeightPerturbation
from .predictive_coding import PredictiveCoding
from .rflo import RFLO
from .rtrl import RTRL
from .spikeprop import SpikeProp
from .stdp import STDP, RewardSTDP, TripletSTDP

__all__ = ["RULES", "Rule", "Alignment", "accumulate_grad", "BPTT", "SurrogateGradient",
           "alignment", "exact_gradient", "rule_alignment", "rule_estimate", "RTRL", "RFLO",
           "Backprop", "FA", "DFA", "KolenPollack", "LearnedFeedback", "EProp", "NodePerturbation",
           "WeightPerturbation", "SingleStepNodePerturbation", "ForwardGradient", "PredictiveCoding",
           "SpikeProp", "STDP", "TripletSTDP", "RewardSTDP"]
