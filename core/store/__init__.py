"""What lasts: the settings, the database (models, engine, migrations) and the data folder the rows point into.

May import core.words."""
