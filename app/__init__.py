"""SSD Explorer, what a person sees: the Streamlit app (main.py, the pages in views/) and the
Plotly figure builders it draws with; every computation comes from ``ssd_core``."""
