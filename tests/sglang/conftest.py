"""SGLang session: the servers get one core per rank (server.py); the test process keeps to one thread
too, so that the oracle's forwards do not spin OpenMP threads against a serving scheduler."""

import torch

torch.set_num_threads(1)
