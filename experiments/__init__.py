"""Everything around the components that makes runs: ``commands/`` (what users type, one
module each), ``engine/`` (training, checkpoints, devices, configuration), ``tracking/``
(observers, the local database, Omniboard) and ``reporting/`` (tables and pictures). Imports
go one way: commands → engine / tracking / reporting → components → registry; ``program.py``
(the name the user typed, for messages) is imported by any of them."""
