"""Mimetic initialization: closed-form inits that make fresh weights look trained.

The method lives in :mod:`mimetic.init`; models, data and the training loop are the
reproduction harness around it.
"""

__version__ = "0.1.0"
