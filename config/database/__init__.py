"""Beacon's database backend (ENGINE "config.database"): see base.py."""
