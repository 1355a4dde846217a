"""Overview: SSD in a few sentences, the TinySSD diagram, links to every page."""

import figures
import present
import streamlit as st
import urlstate
from pages import PAGES

from ssd_core.model import TinySSD, describe


@st.cache_resource(show_spinner=False)
def _book_model() -> TinySSD:
    return TinySSD(num_classes=1)


st.title("SSD Explorer")
st.markdown(
    "**Single Shot MultiBox Detection** finds objects in one forward pass. A small CNN turns the "
    "image into feature maps at five scales; every feature-map cell is the centre of a few "
    "*anchor boxes* of fixed sizes and aspect ratios. For each anchor, two 3×3 convolutions "
    "predict a class (or background) and four offsets that move the anchor onto the object. "
    "Large maps near the input hold many small anchors for small objects, the small maps at the "
    "top hold a few large ones. Training labels each anchor from the ground truth; prediction "
    "decodes the offsets and removes duplicates with non-maximum suppression."
)

size = urlstate.input_size_select("overview.size")
rows = describe(_book_model(), size)
present.chart(figures.tinyssd_diagram(rows, size), width="stretch", key="diagram")
total = sum(r["num_anchors"] for r in rows)
sides = " + ".join(f"{r['output_shape'][1]}²" for r in rows)
st.caption(f"TinySSD at {size}×{size}: ({sides}) × 4 = **{total}** anchors per image "
           "(the chapter: 5444 at 256).")

st.subheader("Explore")
cols = st.columns(2)
for i, p in enumerate(PAGES):
    with cols[i % 2]:
        st.page_link(p.path, label=f"{p.title}: {p.summary}", icon=p.icon)
