"""Overview: SSD in a few sentences, the TinySSD diagram, links to every page."""

import figures
import state
import streamlit as st

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

size = state.input_size_select("overview.size")
rows = describe(_book_model(), size)
st.plotly_chart(figures.tinyssd_diagram(rows, size), width="stretch", key="diagram")
total = sum(r["num_anchors"] for r in rows)
sides = " + ".join(f"{r['output_shape'][1]}²" for r in rows)
st.caption(f"TinySSD at {size}×{size}: ({sides}) × 4 = **{total}** anchors per image "
           "(the chapter: 5444 at 256).")

st.subheader("Explore")
# (page, label, icon); part 2 appends its pages here
LINKS = [
    ("views/anchors.py", "Anchors: the five scales of anchor boxes", ":material/grid_on:"),
    ("views/labeling.py", "Labeling: how anchors become training targets", ":material/label:"),
    ("views/losses.py", "Losses: smooth-L1 and focal loss, interactive", ":material/show_chart:"),
    ("views/model.py", "Model: blocks, shapes, receptive fields, activations",
     ":material/account_tree:"),
]
cols = st.columns(2)
for i, (path, label, icon) in enumerate(LINKS):
    with cols[i % 2]:
        st.page_link(path, label=label, icon=icon)
