"""What finished runs show: the verdict between full fine-tuning and LoRA, comparisons, the tables and words the pages
list runs with, model exports, and labelling a file with a run.

May import core.training, core.data, core.store and core.words."""
