"""SSD Explorer: minimal entry page (the full shell arrives with the app issue)."""

import streamlit as st

from ssd_core.device import default_device, device_label

st.set_page_config(page_title="SSD Explorer", layout="wide")
st.title("SSD Explorer")
st.write("An interactive explorer of Single Shot MultiBox Detection.")
st.sidebar.write(f"Device: {device_label(default_device())}")
