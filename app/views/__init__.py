"""The pages (run by path from main.py's navigation) and their parts (``_*.py``)."""
