"""Run collection and paired-seed tables/figures (what scripts/make_tables.py uses)."""
