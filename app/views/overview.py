"""Overview: SSD in a few sentences, the TinySSD diagram, links to every page."""

import streamlit as st

from app import figures, model_picker, present, urlstate
from app.pages import PAGES
from ssd_core.anchors import TINYSSD_SIZES
from ssd_core.errors import CheckpointError
from ssd_core.model import describe


def model_in_use():
    """(TinySSD, label) of the model the pages use (the sidebar's "Model in use"): the active
    checkpoint, else the shipped model; its anchor sizes are the ones the diagram lists."""
    choices = model_picker.model_choices()
    choice = next(iter(choices))
    try:
        return model_picker.detector(choice).model, choices[choice]
    except CheckpointError:
        return model_picker.detector(model_picker.UNTRAINED).model, choices[model_picker.UNTRAINED]


st.title("SSD Explorer")
intro = (
    "**Single Shot MultiBox Detection** finds objects in one forward pass. A small CNN turns the "
    "image into feature maps at five scales; every feature-map cell is the centre of a few "
    "*anchor boxes* of fixed sizes and aspect ratios. For each anchor, two 3×3 convolutions "
    "predict a class (or background) and four offsets that move the anchor onto the object. "
    "Large maps near the input hold many small anchors for small objects, the small maps at the "
    "top hold a few large ones. Training labels each anchor from the ground truth; prediction "
    "decodes the offsets and removes duplicates with non-maximum suppression."
)
if not present.on():
    st.markdown(intro)

diagram = st.container()
size = urlstate.input_size_select("overview.size")
model, label = model_in_use()
rows = describe(model, size)
present.chart(figures.tinyssd_diagram(rows, size), diagram, main=True, present_height=420,
              key="diagram")
total = sum(r["num_anchors"] for r in rows)
sides = " + ".join(f"{r['output_shape'][1]}²" for r in rows)
book = all(list(r["sizes"]) == list(s) for r, s in zip(rows, TINYSSD_SIZES))
diagram.caption(
    f"TinySSD at {size}×{size}: ({sides}) × 4 = **{total}** anchors per image "
    f"(the chapter: 5444 at 256). Anchor sizes of the model in use ({label})"
    + ("; the book's." if book else
       "; the book's are " + ", ".join(f"{s[0]:g}" for s in TINYSSD_SIZES) + " (and their "
       "second sizes): this model spreads its sizes over its data's objects, see the Anchors "
       "page."))
if present.on():
    present.explain(intro)

st.subheader("Explore")
cols = st.columns(2)
for i, p in enumerate(PAGES):
    with cols[i % 2]:
        st.page_link(p.path, label=f"{p.title}: {p.summary}", icon=p.icon)
