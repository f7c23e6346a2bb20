"""LoRA Lab's engine: everything below the pages, importable and testable without Streamlit (it never imports it).

Layers, each importing only the ones below it (pyproject.toml's import contract checks it in `make test`):

    core.cli       the command line (`python -m core`), over all of them
    core.jobs      who trains what, when: the queue of runs, the worker, its scheduler and runners, estimates
    core.results   what runs show: the verdict, comparisons, tables, exports, labelling files with a run
    core.training  one path for full fine-tuning and LoRA: config, model, Trainer, recording, saving, predicting
    core.data      reading, checking, splitting and keeping datasets
    core.store     settings, the database and its migrations, the data folder
    core.words     how numbers, sizes, durations and times read
    core.i18n      the reader's language: the translation catalogues, numbers by locale
"""
