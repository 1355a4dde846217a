"""The Teach page's access to the photo sets (``ssd_core.userdata``, in the runs folder) and the
session's choice of set and image (mirrored in the URL as ``?set=`` and ``?img=``)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import job_queue
from ssd_core.userdata import UserDataset, list_datasets

SET_KEY = "teach.set"
IMG_KEY = "teach.img"


def all_sets() -> list[UserDataset]:
    """Every photo set in the runs folder, newest first."""
    return list_datasets(job_queue.runs_dir())


def photo_path(ds: UserDataset, entry) -> Path:
    return ds.image_path(entry.id)


def select_set(name: str | None) -> None:
    """Make ``name`` the session's set (and the URL's ``?set=``), at its first image."""
    st.session_state[SET_KEY] = name
    st.session_state[IMG_KEY] = 0
    if name:
        st.query_params["set"] = name
    else:
        st.query_params.pop("set", None)
    st.query_params.pop("img", None)


def chosen_set(sets: list):
    """The session's set (from Session State, else the URL's ``?set=``), or None."""
    name = st.session_state.get(SET_KEY, st.query_params.get("set"))
    found = next((s for s in sets if s.name == name), None)
    st.session_state[SET_KEY] = found.name if found is not None else None
    return found


def image_index(n: int) -> int:
    """The session's image index (from the URL's ``?img=`` on a fresh session), kept in 0..n-1."""
    if IMG_KEY not in st.session_state:
        try:
            st.session_state[IMG_KEY] = int(st.query_params.get("img", 0))
        except ValueError:
            st.session_state[IMG_KEY] = 0
    i = min(max(0, int(st.session_state[IMG_KEY])), max(0, n - 1))
    set_image_index(i)
    return i


def set_image_index(i: int) -> None:
    st.session_state[IMG_KEY] = i
    st.query_params["img"] = str(i)


def bump(key: str) -> int:
    """Increment a per-session counter (used in widget keys to give a widget a fresh state)."""
    st.session_state[key] = st.session_state.get(key, 0) + 1
    return st.session_state[key]


def counter(key: str) -> int:
    return st.session_state.get(key, 0)
