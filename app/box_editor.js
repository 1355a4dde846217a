// The mouse box editor of the Teach page's Label step, mounted by app/box_editor.py through
// Streamlit's Custom Components v2 (an ES module: Streamlit calls its default export with the
// mount's `data`, the `parentElement` (a shadow root) and `setTriggerValue`). No build step, no
// third-party code, nothing fetched: the photo comes in `data` as a data URL.
//
// data: {image_id, rev (changes with every edit Python handled, saved or refused, so the
//        editor shows what was saved), url, width, height (image pixels),
//        boxes: [{label, x1, y1, x2, y2}], label (class of a new box, or null),
//        colors: {label: "#rrggbb"}, max_height (CSS px), font_px, min_side (image px)}
// Gestures: drag on empty photo (or with Shift anywhere) draws a box of `label`; drag inside a
// box moves it; drag a handle of the selected box resizes it; a click selects; Delete /
// Backspace or the x in the selected box's tag removes it; Escape unselects. When a gesture
// that changed the boxes ends, the whole list (image pixels) is sent as the trigger "edit":
// {image_id, boxes}. Python validates and saves it; the next run sends the saved boxes back.

const HANDLES = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];
const CLICK_PX = 3; // screen px: a pointer that moved less than this clicked, it did not drag

function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

// Black or white text, whichever reads better on `hex`.
function ink(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
  if (!m) return "#000";
  const n = parseInt(m[1], 16);
  const lum = 0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255);
  return lum > 150 ? "#000" : "#fff";
}

const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
const round1 = (v) => Math.round(v * 10) / 10;

function createEditor(host) {
  const root = el("div", "be-root", host);
  root.dataset.testid = "box-editor";
  const stage = el("div", "be-stage", root);
  stage.tabIndex = 0;
  stage.setAttribute("role", "application");
  stage.setAttribute("aria-label", "Photo: drag to draw a box; drag a box to move it");
  const img = el("img", "be-photo", stage);
  img.draggable = false;
  img.alt = "";
  const layer = el("div", "be-layer", stage);
  const draft = el("div", "be-draft", stage);
  draft.hidden = true;

  const ed = {
    root, stage, img, layer, draft,
    data: null, pending: null, boxes: [], selected: -1, scale: 1, gesture: null, send: null,
  };

  ed.color = (label) => (ed.data.colors || {})[label] || "#ffffff";

  ed.layout = () => {
    const d = ed.data;
    const avail = root.clientWidth || d.width;
    // No taller than the window below the photo's place on the page (at least 280 px), so the
    // whole photo shows without scrolling on a 1280x720 projector.
    const top = root.getBoundingClientRect().top + window.scrollY;
    const maxH = Math.min(d.max_height, Math.max(280, window.innerHeight - top - 24));
    const w = Math.max(50, Math.min(avail, maxH * d.width / d.height));
    ed.scale = w / d.width;
    stage.style.width = `${w}px`;
    stage.style.height = `${d.height * ed.scale}px`;
    ed.render();
  };

  // The boxes as absolutely placed divs (CSS px), the larger ones first so that a small box
  // lying inside a large one stays on top, where the mouse reaches it.
  ed.render = () => {
    const s = ed.scale, font = ed.data.font_px || 14;
    layer.replaceChildren();
    const order = ed.boxes.map((b, i) => i).sort((a, b) => area(ed.boxes[b]) - area(ed.boxes[a]));
    for (const i of order) {
      const b = ed.boxes[i], c = ed.color(b.label);
      const box = el("div", "be-box", layer);
      box.dataset.i = i;
      Object.assign(box.style, {
        left: `${b.x1 * s}px`, top: `${b.y1 * s}px`,
        width: `${(b.x2 - b.x1) * s}px`, height: `${(b.y2 - b.y1) * s}px`, borderColor: c,
      });
      const tag = el("div", "be-tag", box);
      tag.style.background = c;
      tag.style.color = ink(c);
      tag.style.fontSize = `${font}px`;
      const inside = b.y1 * s < font + 8; // no room above the box: the tag goes inside
      tag.classList.toggle("be-inside", inside);
      el("span", "be-name", tag).textContent = `${i + 1} ${b.label || "?"}`;
      if (i === ed.selected) {
        box.classList.add("be-selected");
        const x = el("button", "be-x", tag);
        x.type = "button";
        x.textContent = "\u00d7";
        x.title = "Delete this box";
        x.setAttribute("aria-label", `Delete box ${i + 1}`);
        x.style.color = ink(c);
        x.dataset.action = "delete";
        for (const h of HANDLES) {
          const k = el("div", `be-h be-h-${h}`, box);
          k.dataset.handle = h;
        }
      }
    }
  };

  const area = (b) => (b.x2 - b.x1) * (b.y2 - b.y1);

  // Pointer position in image pixels, clamped to the photo.
  const at = (e) => {
    const r = stage.getBoundingClientRect(), d = ed.data;
    return {
      x: clamp((e.clientX - r.left) / ed.scale, 0, d.width),
      y: clamp((e.clientY - r.top) / ed.scale, 0, d.height),
    };
  };

  const commit = () => {
    if (ed.send) ed.send(ed.boxes.map((b) => ({
      label: b.label, x1: round1(b.x1), y1: round1(b.y1), x2: round1(b.x2), y2: round1(b.y2),
    })));
  };

  const remove = (i) => {
    ed.boxes.splice(i, 1);
    ed.selected = -1;
    ed.render();
    commit();
  };

  stage.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || !ed.data) return;
    const t = e.target;
    if (t.dataset.action === "delete") return; // the x: handled on click
    e.preventDefault();
    stage.focus({ preventScroll: true });
    const p = at(e), boxEl = t.closest(".be-box");
    const i = boxEl ? Number(boxEl.dataset.i) : -1;
    const g = { start: p, cx: e.clientX, cy: e.clientY, moved: false };
    if (t.dataset.handle && i === ed.selected) {
      Object.assign(g, { mode: "resize", i, handle: t.dataset.handle, orig: { ...ed.boxes[i] } });
    } else if (i >= 0 && !e.shiftKey) {
      Object.assign(g, { mode: "move", i, orig: { ...ed.boxes[i] } });
      if (ed.selected !== i) {
        ed.selected = i;
        ed.render();
      }
    } else {
      g.mode = "draw";
    }
    ed.gesture = g;
    stage.setPointerCapture(e.pointerId);
  });

  stage.addEventListener("pointermove", (e) => {
    const g = ed.gesture;
    if (!g) return;
    if (Math.hypot(e.clientX - g.cx, e.clientY - g.cy) >= CLICK_PX) g.moved = true;
    if (!g.moved) return;
    const p = at(e), d = ed.data, min = d.min_side;
    if (g.mode === "draw") {
      const s = ed.scale, c = ed.color(d.label);
      Object.assign(draft.style, {
        left: `${Math.min(g.start.x, p.x) * s}px`, top: `${Math.min(g.start.y, p.y) * s}px`,
        width: `${Math.abs(p.x - g.start.x) * s}px`, height: `${Math.abs(p.y - g.start.y) * s}px`,
        borderColor: d.label ? c : "#ffffff",
      });
      draft.hidden = false;
      g.end = p;
    } else if (g.mode === "move") {
      const o = g.orig, w = o.x2 - o.x1, h = o.y2 - o.y1;
      const x1 = clamp(o.x1 + p.x - g.start.x, 0, d.width - w);
      const y1 = clamp(o.y1 + p.y - g.start.y, 0, d.height - h);
      ed.boxes[g.i] = { ...o, x1, y1, x2: x1 + w, y2: y1 + h };
      ed.render();
    } else if (g.mode === "resize") {
      const b = { ...g.orig }, h = g.handle;
      if (h.includes("w")) b.x1 = clamp(p.x, 0, b.x2 - min);
      if (h.includes("e")) b.x2 = clamp(p.x, b.x1 + min, d.width);
      if (h.includes("n")) b.y1 = clamp(p.y, 0, b.y2 - min);
      if (h.includes("s")) b.y2 = clamp(p.y, b.y1 + min, d.height);
      ed.boxes[g.i] = b;
      ed.render();
    }
  });

  // A gesture ends: send the boxes when it changed them; else show data that came meanwhile
  // (when it changed them, the data of that send comes next).
  const end = (e, cancelled) => {
    if (!ed.gesture) return;
    const sent = finish(e, cancelled);
    if (!sent && ed.pending) ed.apply(ed.pending);
    ed.pending = null;
  };

  const finish = (e, cancelled) => {
    const g = ed.gesture;
    ed.gesture = null;
    if (stage.hasPointerCapture(e.pointerId)) stage.releasePointerCapture(e.pointerId);
    draft.hidden = true;
    if (cancelled) {
      if (g.orig) ed.boxes[g.i] = g.orig;
      ed.render();
      return false;
    }
    if (g.mode === "draw") {
      const p = g.end;
      const min = ed.data.min_side;
      if (!g.moved || !p || Math.abs(p.x - g.start.x) < min || Math.abs(p.y - g.start.y) < min) {
        if (ed.selected >= 0) { // a click on the photo: nothing selected any more
          ed.selected = -1;
          ed.render();
        }
        return false;
      }
      ed.boxes.push({
        label: ed.data.label || null,
        x1: Math.min(g.start.x, p.x), y1: Math.min(g.start.y, p.y),
        x2: Math.max(g.start.x, p.x), y2: Math.max(g.start.y, p.y),
      });
      ed.selected = ed.boxes.length - 1;
      ed.render();
      commit();
      return true;
    }
    const a = g.orig, b = ed.boxes[g.i];
    if (g.moved && (a.x1 !== b.x1 || a.y1 !== b.y1 || a.x2 !== b.x2 || a.y2 !== b.y2)) {
      commit();
      return true;
    }
    return false;
  };
  stage.addEventListener("pointerup", (e) => end(e, false));
  stage.addEventListener("pointercancel", (e) => end(e, true));

  stage.addEventListener("click", (e) => {
    const t = e.target;
    if (t.dataset.action === "delete") {
      e.stopPropagation();
      remove(Number(t.closest(".be-box").dataset.i));
    }
  });

  stage.addEventListener("keydown", (e) => {
    if ((e.key === "Delete" || e.key === "Backspace") && ed.selected >= 0) {
      e.preventDefault();
      remove(ed.selected);
    } else if (e.key === "Escape" && ed.selected >= 0) {
      ed.selected = -1;
      ed.render();
    }
  });

  // New data from Python (the saved boxes, the class of the next box): shown as they are.
  ed.apply = (data) => {
    const other = !ed.data || ed.data.image_id !== data.image_id;
    ed.data = data;
    ed.pending = null;
    ed.boxes = (data.boxes || []).map((b) => ({ ...b }));
    if (other || ed.selected >= ed.boxes.length) ed.selected = -1;
    ed.gesture = null;
    draft.hidden = true;
    if (img.getAttribute("src") !== data.url) img.src = data.url;
    ed.layout();
  };

  ed.observer = new ResizeObserver(() => ed.data && ed.layout());
  return ed;
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  // Streamlit calls this again whenever `data` changes, on the same shadow root: the editor
  // is made once and kept on it.
  let ed = parentElement.__ssdBoxEditor;
  if (!ed) {
    ed = createEditor(parentElement);
    parentElement.__ssdBoxEditor = ed;
  }
  ed.send = (boxes) => setTriggerValue("edit", { image_id: data.image_id, boxes });
  if (ed.gesture && ed.data && ed.data.image_id === data.image_id) {
    ed.pending = data; // the saved boxes of an earlier gesture: after this one ends
  } else {
    ed.apply(data);
  }
  ed.observer.observe(ed.root);
  return () => ed.observer.disconnect();
}
