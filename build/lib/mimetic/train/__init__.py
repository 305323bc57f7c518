"""The training harness behind ``python train.py``."""
