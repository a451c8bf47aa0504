// A virtual list: only the rows in and near the viewport exist in the DOM, whatever the count
// (100,000 frames, a turn of 10,000 chunks). Row heights start as estimates and are measured once
// rendered; a row above the viewport that changes height moves the scroll position with it, so
// the view does not jump. While the view is at the bottom it follows new rows. All work happens in
// one animation frame however many changes came in since the last one.

const OVERSCAN = 600;

export class VirtualList {
  constructor(scroller, { count, render, version, estimate = 40 }) {
    this.scroller = scroller;
    this.renderRow = render;
    this.version = version;
    this.estimate = estimate;
    this.heights = [];
    this.offsets = [0];
    this.validTo = 0; // offsets[0..validTo] are right
    this.cache = new Map(); // index -> {el, version}
    this.stick = true;
    this.frame = 0;
    this.spacer = document.createElement("div");
    this.spacer.className = "vl-spacer";
    this.rows = document.createElement("div");
    this.rows.className = "vl-rows";
    this.spacer.append(this.rows);
    scroller.replaceChildren(this.spacer);
    this.onScroll = () => {
      this.stick = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 8;
      this.schedule();
    };
    scroller.addEventListener("scroll", this.onScroll, { passive: true });
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(scroller);
    this.setCount(count);
  }

  // another list takes the scroller (the raw frames view and back): this one lets go of it
  destroy() {
    this.scroller.removeEventListener("scroll", this.onScroll);
    this.resize.disconnect();
    cancelAnimationFrame(this.frame);
    this.frame = -1; // never scheduled again
  }

  setCount(n) {
    while (this.heights.length < n) this.heights.push(this.estimate);
    if (this.heights.length > n) {
      this.heights.length = n;
      this.validTo = Math.min(this.validTo, n);
    }
    this.schedule();
  }

  changed() {
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  offsetOf(i) {
    const { offsets, heights } = this;
    for (let k = this.validTo; k < i; k++) offsets[k + 1] = offsets[k] + heights[k];
    if (i > this.validTo) this.validTo = i;
    return offsets[i];
  }

  total() {
    return this.offsetOf(this.heights.length);
  }

  indexAt(y) {
    let lo = 0;
    let hi = this.heights.length - 1;
    this.total();
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offsets[mid] <= y) lo = mid;
      else hi = mid - 1;
    }
    return Math.max(0, lo);
  }

  setHeight(i, height) {
    if (this.heights[i] === height) return 0;
    const delta = height - this.heights[i];
    this.heights[i] = height;
    this.validTo = Math.min(this.validTo, i);
    return delta;
  }

  scrollToIndex(i) {
    this.stick = i >= this.heights.length - 1;
    this.scroller.scrollTop = this.offsetOf(Math.min(i, this.heights.length));
    this.render();
  }

  scrollToEnd() {
    this.stick = true;
    this.render();
  }

  render() {
    const n = this.heights.length;
    for (let pass = 0; pass < 3; pass++) {
      if (this.stick) this.scroller.scrollTop = this.total();
      const top = this.scroller.scrollTop;
      const first = n ? this.indexAt(Math.max(0, top - OVERSCAN)) : 0;
      const bottom = top + this.scroller.clientHeight + OVERSCAN;
      const shown = [];
      for (let i = first; i < n && this.offsetOf(i) < bottom; i++) shown.push(i);
      const moved = this.place(first, shown, top);
      this.spacer.style.height = this.total() + "px";
      if (!moved) break;
    }
    if (this.stick) this.scroller.scrollTop = this.total();
  }

  // Put rows `shown` in the DOM, measure them, and keep the row at the top of the view in place.
  place(first, shown, top) {
    const keep = new Set(shown);
    for (const i of this.cache.keys()) if (!keep.has(i)) this.cache.delete(i);
    const els = shown.map((i) => {
      const v = this.version(i);
      let hit = this.cache.get(i);
      if (!hit || hit.version !== v) {
        hit = { el: this.renderRow(i), version: v };
        this.cache.set(i, hit);
      }
      return hit.el;
    });
    this.rows.replaceChildren(...els);
    this.rows.style.transform = `translateY(${this.offsetOf(first)}px)`;
    let above = 0;
    let moved = false;
    shown.forEach((i, k) => {
      const before = this.offsetOf(i);
      const delta = this.setHeight(i, els[k].offsetHeight || 1);
      if (delta) {
        moved = true;
        if (before + this.heights[i] - delta <= top) above += delta;
      }
    });
    if (above && !this.stick) this.scroller.scrollTop = top + above;
    return moved;
  }
}
