"""Teach, step 6 (Keep): the set lives in the runs folder; rename it, export it as a zip in any
of the four formats, import a dataset as a new set, delete it (photos included)."""

from __future__ import annotations

import streamlit as st

from app import job_queue
from app.views._teach_store import select_set
from ssd_core.errors import SSDError
from ssd_core.userdata import import_dataset

FORMATS = ["coco", "voc", "yolo", "csv"]
FORMAT_LABELS = {"coco": "COCO JSON", "voc": "Pascal VOC XML", "yolo": "YOLO txt",
                 "csv": "the book's CSV"}


def rename(ds) -> None:
    with st.form("teach.rename_form"):
        new = st.text_input("New name", ds.name, key="teach.rename", max_chars=60)
        if st.form_submit_button("Rename", icon=":material/edit:"):
            try:
                ds.rename(new.strip())
            except (SSDError, ValueError, OSError) as e:
                st.error(f"The set could not be renamed: {e}")
                return
            select_set(ds.name)
            st.rerun()


def export(ds) -> None:
    fmt = st.radio("Export format", FORMATS, horizontal=True, key="teach.export_fmt",
                   format_func=FORMAT_LABELS.get)
    try:
        data = ds.export_zip(fmt)
    except (SSDError, ValueError, OSError) as e:
        st.error(f"The set could not be exported: {e}")
        return
    st.download_button(f"Download {ds.name}-{fmt}.zip", data, file_name=f"{ds.name}-{fmt}.zip",
                       mime="application/zip", on_click="ignore", key="teach.export",
                       icon=":material/download:")


def delete(ds) -> None:
    sure = st.checkbox(f"Yes, delete **{ds.name}** and its {len(ds.images)} photo(s)",
                       key="teach.delete_sure")
    if st.button("Delete the set", key="teach.delete", icon=":material/delete_forever:",
                 disabled=not sure, type="primary"):
        try:
            ds.delete()
        except (SSDError, OSError) as e:
            st.error(f"The set could not be deleted: {e}")
            return
        st.session_state.pop("teach.delete_sure", None)
        select_set(None)
        st.rerun()


def import_set() -> None:
    """A dataset zip (COCO, VOC, YOLO or the book's CSV) becomes a new set."""
    up = st.file_uploader("Import a dataset (.zip in COCO, VOC, YOLO or the book's CSV)",
                          type=["zip"], key="teach.import")
    name = st.text_input("Name of the imported set", key="teach.import_name", max_chars=60)
    if st.button("Import", key="teach.import_go", icon=":material/upload:",
                 disabled=up is None or not name.strip()):
        path = job_queue.save_upload(up.getvalue())
        try:
            with st.spinner("Importing ..."):
                ds = import_dataset(job_queue.runs_dir(), path, name.strip())
        except (SSDError, ValueError, OSError) as e:
            st.error(f"That dataset could not be imported: {e}")
            return
        select_set(ds.name)
        st.rerun()


def keep(ds) -> None:
    """Step 6."""
    st.markdown(f"The set **{ds.name}** is kept on the server in `{ds.path}` (the photos and "
                "a COCO JSON of their boxes): it survives a refresh and a restart.")
    c1, c2, c3 = st.columns(3)
    with c1:
        rename(ds)
    with c2:
        export(ds)
    with c3:
        delete(ds)
    with st.expander("Import a dataset as a new set"):
        import_set()
