"""`lwgen fit`: one command from an image folder and a CSV to evaluated generators (see `run.run_fit`)."""
from .data import DataReport, check_data
from .plan import FitOptions, budget
from .state import CARD, LOG, STATE, read_state

__all__ = ["CARD", "LOG", "STATE", "DataReport", "FitOptions", "budget", "check_data", "read_state"]
