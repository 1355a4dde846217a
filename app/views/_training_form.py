"""The Training page's New run form: the setting recipe (Classroom demo or Book) that fills it,
the optimisation, loss and data inputs (choices, defaults and help from ssd_core.config), and
queueing the run."""


import streamlit as st

from app import job_queue, urlstate
from ssd_core import DataSpec, TrainConfig
from ssd_core.config import FIELDS, choices, help_text
from ssd_core.data import FORMATS, PRESETS, load_dataset
from ssd_core.errors import ConfigError, SSDError
from ssd_core.recipes import DEFAULT_RECIPE, RECIPES, get_recipe, recipe_settings

RUN_KEY = "training.run"
FORM_OPEN_KEY = "training.form_open"
STARTED_KEY = "training.started"  # a run this session just queued, shown on the next run
CHOICE_LABELS = {"ce": "cross-entropy", "l1": "L1", "smooth_l1": "smooth-L1"}
RECIPE_KEY = "training.recipe"
# Form widget key -> the recipe value it shows (a setting's flat name, or data of the recipe).
RECIPE_FORM_KEYS = {
    "training.epochs": "epochs", "training.batch": "batch_size", "training.lr": "lr",
    "training.optimizer": "optimizer", "training.schedule": "schedule",
    "training.input_size": "input_size", "training.cls_loss": "cls_loss",
    "training.gamma": "focal_gamma", "training.alpha": "focal_alpha",
    "training.box_loss": "box_loss", "training.sigma": "smooth_l1_sigma",
    "training.cls_weight": "cls_weight", "training.box_weight": "box_weight",
    "training.normalize": "normalize", "training.hnm": "hard_negative_mining",
    "training.n": "train_images", "training.val_n": "val_images", "training.augment": "augment",
    "training.precision": "precision"}



def log_every(num_images: int, batch_size: int) -> int:
    """Log about 5 times per epoch (at most every 10 steps) so short runs still draw curves."""
    steps = max(1, -(-num_images // batch_size))
    return max(1, min(10, steps // 5))


def start_job(spec: DataSpec, name: str, settings: dict, num_images: int) -> None:
    """Queue a run with the form's (flat) settings; the page then follows it."""
    try:
        config = TrainConfig.from_dict(
            {**settings, "log_every": log_every(num_images, settings["batch_size"])})
        run_id = job_queue.job_manager().submit(config, spec, name or None)
    except SSDError as e:
        st.error(f"The run could not start: {e}")
        return
    # The run selector is drawn above the form: hand the new run over through another key and
    # rerun, so the page shows it first (a widget's key cannot change once it is drawn).
    st.session_state[STARTED_KEY] = run_id
    st.session_state[FORM_OPEN_KEY] = False
    st.query_params["run"] = run_id
    st.rerun()


def initial(key: str, value, unset):
    """A widget's default ``value``, or Streamlit's own ``unset`` one when the recipe already put
    the key in Session State (a default there as well makes Streamlit show a warning box)."""
    return unset if key in st.session_state else value


def number(box, name: str, key: str, label: str, lo, hi, step=None, **kw):
    """A number input for the setting ``name``, with its default and help from ssd_core.config."""
    return box.number_input(label, lo, hi, initial(key, FIELDS[name].default, "min"), step,
                            key=key, help=help_text(name), **kw)


def choice(widget, name: str, key: str, label: str, **kw):
    """A radio or selectbox over the setting's choices in ssd_core.config."""
    return widget(label, list(choices(name)), key=key, help=help_text(name),
                  format_func=lambda v: CHOICE_LABELS.get(v, v), **kw)


def optimisation_inputs() -> dict:
    st.markdown("**Optimisation**")
    return {
        "epochs": number(st, "epochs", "training.epochs", "Epochs", 1, 1000),
        "batch_size": number(st, "batch_size", "training.batch", "Batch size", 1, 1024),
        "lr": number(st, "lr", "training.lr", "Learning rate", 1e-6, 10.0, format="%.4g"),
        "optimizer": choice(st.selectbox, "optimizer", "training.optimizer", "Optimizer"),
        "schedule": choice(st.selectbox, "schedule", "training.schedule", "LR schedule"),
        "precision": choice(st.selectbox, "precision", "training.precision", "Precision"),
        "input_size": st.select_slider("Input size", urlstate.INPUT_SIZES,
                                       initial("training.input_size",
                                               FIELDS["input_size"].default, None),
                                       key="training.input_size",
                                       help=help_text("input_size")),
    }


def loss_inputs() -> dict:
    st.markdown("**Loss**")
    out = {"cls_loss": choice(st.radio, "cls_loss", "training.cls_loss", "Class loss",
                              horizontal=True)}
    g1, g2 = st.columns(2)
    out["focal_gamma"] = number(g1, "focal_gamma", "training.gamma", "Focal γ", 0.0, 10.0, 0.5)
    out["focal_alpha"] = number(g2, "focal_alpha", "training.alpha", "Focal α", 0.01, 1.0, 0.05)
    out["box_loss"] = choice(st.radio, "box_loss", "training.box_loss", "Box loss",
                             horizontal=True)
    out["smooth_l1_sigma"] = number(st, "smooth_l1_sigma", "training.sigma", "Smooth-L1 σ",
                                    0.01, 100.0)
    w1, w2 = st.columns(2)
    out["cls_weight"] = number(w1, "cls_weight", "training.cls_weight", "Class weight",
                               0.0, 100.0)
    out["box_weight"] = number(w2, "box_weight", "training.box_weight", "Box weight",
                               0.0, 100.0)
    out["normalize"] = choice(st.radio, "normalize", "training.normalize", "Loss normalisation",
                              horizontal=True)
    out["hard_negative_mining"] = st.checkbox(
        f"Hard negative mining ({FIELDS['neg_ratio'].default:g}:1)",
        initial("training.hnm", FIELDS["hard_negative_mining"].default, False),
        key="training.hnm",
        help=help_text("hard_negative_mining"))
    return out


def data_inputs(upload) -> dict:
    """The Data column: synthetic settings, or the uploaded zip's format and split."""
    st.markdown("**Data**")
    if upload is None:
        d = {"preset": st.selectbox("Synthetic preset", list(PRESETS), key="training.preset",
                                    help="default: bananas, rings and stars, 1-6 per image; "
                                         "book: one banana per image, like the chapter."),
             "n": st.number_input("Training images", 1, 100_000,
                                  initial("training.n", 512, "min"), key="training.n"),
             "val_n": st.number_input("Validation images", 0, 10_000,
                                      initial("training.val_n", 64, "min"),
                                      key="training.val_n"),
             "seed": st.number_input("Data seed", 0, 2**31 - 1, 0, key="training.seed")}
    else:
        d = {"fmt": st.selectbox("Format", ["auto", *FORMATS], key="training.fmt"),
             "val_fraction": st.slider("Validation fraction", 0.0, 0.5, 0.1, 0.05,
                                       key="training.val_fraction")}
    d["augment"] = st.checkbox("Augment (flip, crop, colour)", False, key="training.augment")
    d["name"] = st.text_input("Run name (optional)", key="training.name", max_chars=40)
    return d


def data_spec(upload, d: dict, input_size: int):
    """``(DataSpec, number of training images)``; an uploaded zip is checked now, so a bad one
    is an error here rather than a failed job (None after its st.error)."""
    if upload is None:
        return DataSpec("synthetic", n=int(d["n"]), seed=int(d["seed"]), preset=d["preset"],
                        val_n=int(d["val_n"]), augment=d["augment"]), int(d["n"])
    path = job_queue.save_upload(upload.getvalue())
    fmt = None if d["fmt"] == "auto" else d["fmt"]
    try:
        ds = load_dataset(path, fmt=fmt, image_size=input_size, name=upload.name)
        if len(ds) < 2:
            raise ConfigError("the dataset needs at least 2 images (train + validation)")
    except (ValueError, RuntimeError) as e:
        st.error(f"That dataset could not be used: {e}")
        return None
    return DataSpec("path", path=str(path), fmt=fmt, val_fraction=float(d["val_fraction"]),
                    augment=d["augment"]), len(ds)


def recipe_values(name: str) -> dict:
    """Form widget key -> value for the setting recipe ``name`` (ssd_core.recipes)."""
    recipe = get_recipe(name)
    values = {**recipe_settings(name), "train_images": recipe.train_images,
              "val_images": recipe.val_images, "augment": recipe.augment}
    return {key: values[what] for key, what in RECIPE_FORM_KEYS.items()}


def recipe_choice() -> str:
    """The "Settings" choice above the form (Classroom demo by default, or the Book). A new
    choice fills the form with the recipe's values; a form value the session lost (its widget
    was not drawn) is filled again from the current recipe."""
    name = urlstate.bind(
        st.radio, RECIPE_KEY, DEFAULT_RECIPE, "Settings", list(RECIPES),
        valid=lambda v: v in RECIPES, horizontal=True, format_func=lambda k: RECIPES[k].label,
        help="Each choice fills the form below; its details are in the fold under it.")
    changed = st.session_state.get("training.recipe_filled") != name
    for key, value in recipe_values(name).items():
        if changed or key not in st.session_state:
            st.session_state[key] = value
    st.session_state["training.recipe_filled"] = name
    recipe = get_recipe(name)
    extra = {k: v for k, v in recipe.settings.items() if k not in RECIPE_FORM_KEYS.values()}
    st.markdown(recipe.summary or recipe.label)
    with st.expander("What this recipe sets, and why"):
        st.markdown(recipe.why)
        if extra:
            st.markdown("Also set (not in the form): " + ", ".join(
                f"`{k} = {v}`" for k, v in extra.items()) + ".")
    return name


def config_form(upload, recipe: str = DEFAULT_RECIPE) -> None:
    """The training form, filled with the setting recipe's values (the form's fields over the
    recipe's other settings); submitting queues a job."""
    with st.form("training.form"):
        c1, c2, c3 = st.columns(3)
        with c1:
            d = data_inputs(upload)
        with c2:
            settings = optimisation_inputs()
        with c3:
            settings.update(loss_inputs())
        submitted = st.form_submit_button("Start training", type="primary")
    if not submitted:
        return
    checked = data_spec(upload, d, int(settings["input_size"]))
    if checked is not None:
        spec, num_images = checked
        start_job(spec, d["name"], {**recipe_settings(recipe), **settings}, num_images)
