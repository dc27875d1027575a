// editbatch report page: sorting and the compare view. Inlined into the page; no network.
"use strict";
(function () {
  const items = document.querySelector("main.items");
  const original = Array.from(items.children);

  // Sort by any data-sort-<key> attribute; items without the figure go last.
  document.getElementById("sort").addEventListener("change", (event) => {
    const [key, order] = event.target.value.split(":");
    let ordered = original.slice();
    if (key) {
      const attr = "sort" + key.charAt(0).toUpperCase() + key.slice(1);
      const sign = order === "asc" ? 1 : -1;
      ordered.sort((a, b) => {
        const x = parseFloat(a.dataset[attr]);
        const y = parseFloat(b.dataset[attr]);
        if (Number.isNaN(x) || Number.isNaN(y)) {
          return Number.isNaN(x) - Number.isNaN(y);
        }
        return sign * (x - y);
      });
    }
    items.replaceChildren(...ordered);
  });

  // Compare: the first input and the first output in one box, the output over the input
  // and cut by the slider. The full files when they open, the thumbnails otherwise.
  const dialog = document.getElementById("compare");
  const slider = document.getElementById("cmp-slider");
  const before = document.getElementById("cmp-in");
  const after = document.getElementById("cmp-out");
  function show(img, thumb) {
    img.onerror = () => { img.onerror = null; img.src = thumb.src; };
    img.src = thumb.dataset.full || thumb.src;
  }
  function cut() {
    after.style.clipPath = "inset(0 0 0 " + slider.value + "%)";
  }
  slider.addEventListener("input", cut);
  document.getElementById("cmp-toggle").addEventListener("click", () => {
    slider.value = Number(slider.value) > 50 ? 0 : 100;
    cut();
  });
  items.addEventListener("click", (event) => {
    const button = event.target.closest("button.compare");
    if (!button) return;
    const item = button.closest(".item");
    const input = item.querySelector("figure.input img");
    const output = item.querySelector("figure.output img");
    document.getElementById("cmp-title").textContent = item.querySelector("h3").textContent;
    before.style.aspectRatio = input.width + " / " + input.height;
    show(before, input);
    show(after, output);
    slider.value = 50;
    cut();
    dialog.showModal();
  });
})();
