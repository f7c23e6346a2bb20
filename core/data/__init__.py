"""Datasets: reading uploaded files in any encoding, checking them in plain words, splitting one file, and keeping
datasets whole in the data folder.

May import core.store and core.words."""
