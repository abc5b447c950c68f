// Small enhancements; every page works without them.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons of the code snippets (shown only where the clipboard can be written).
  if (navigator.clipboard) {
    for (const button of document.querySelectorAll("button.copy[data-copy]")) {
      button.hidden = false;
      button.addEventListener("click", async () => {
        const source = document.getElementById(button.dataset.copy);
        if (!source) return;
        try {
          await navigator.clipboard.writeText(source.textContent);
          button.textContent = "Copied";
        } catch (err) {
          button.textContent = "Select and copy";
        }
        setTimeout(() => { button.textContent = "Copy"; }, 2000);
      });
    }
  }

  // A spec computed from a CSV in the browser (rkme.js, in a worker): the CSV stays here.
  const csvBlock = document.querySelector("[data-csv]");
  const specInput = document.getElementById("f-spec");
  if (csvBlock && specInput && window.Worker && window.DataTransfer && window.FileReader) {
    csvBlock.hidden = false;
    const csvInput = document.getElementById("f-csv");
    const gammaInput = document.getElementById("f-gamma");
    const status = document.getElementById("csv-status");
    const maxBytes = 50 * 1024 * 1024;
    let worker = null;
    csvInput.addEventListener("change", () => {
      const file = csvInput.files && csvInput.files[0];
      if (!file) return;
      const gamma = Number(gammaInput.value);
      if (!(gamma > 0)) {
        status.textContent = "γ must be a number above 0.";
        return;
      }
      if (file.size > maxBytes) {
        status.textContent = "This CSV is over 50 MB: fit its spec with wharf spec fit instead.";
        return;
      }
      if (worker) worker.terminate();
      worker = new Worker("/static/web/rkme-worker.js");
      status.textContent = `Computing the spec of ${file.name}…`;
      worker.onmessage = (event) => {
        const answer = event.data;
        worker.terminate();
        worker = null;
        if (answer.error) {
          status.textContent = `${file.name}: ${answer.error}`;
          return;
        }
        const name = file.name.replace(/\.csv$/i, "") + "-spec.json";
        const spec = new File([JSON.stringify(answer.spec)], name, { type: "application/json" });
        const transfer = new DataTransfer();
        transfer.items.add(spec);
        specInput.files = transfer.files;
        status.textContent =
          `Computed from ${answer.n} rows × ${answer.d} columns in ${(answer.ms / 1000).toFixed(1)} s: ` +
          `${answer.spec.beta.length} points, γ = ${answer.spec.gamma}. It is in the spec field; press Search.`;
      };
      worker.onerror = () => {
        status.textContent = "The spec could not be computed here: use wharf spec fit.";
      };
      file.text().then((text) => worker.postMessage({ text: text, options: { gamma: gamma } }));
    });
  }

  // A check's page follows the check: a long poll of its state (held by the server until
  // it changes or ends), the progress shown as it comes, the page reloaded once it ends.
  const check = document.querySelector("[data-check]");
  if (check && check.dataset.ended === "false" && window.fetch) {
    const url = `/checks/${encodeURIComponent(check.dataset.check)}/state?wait=20`;
    const show = (state) => {
      const put = (id, text) => {
        const el = document.getElementById(id);
        if (el) el.textContent = text;
      };
      put("check-state", state.state);
      put("check-stage", state.stage || "");
      put("check-progress", String(Math.round(100 * state.progress)));
      const bar = document.getElementById("check-bar");
      if (bar) bar.value = state.progress;
    };
    const poll = async (failures) => {
      try {
        const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (!answer.ok) throw new Error(String(answer.status));
        const state = await answer.json();
        show(state);
        if (state.ended) {
          window.location.reload();
          return;
        }
        setTimeout(() => poll(0), 500);
      } catch (err) {
        // The market restarting, a network blip: try again, more slowly each time.
        setTimeout(() => poll(failures + 1), Math.min(30000, 1000 * 2 ** failures));
      }
    };
    poll(0);
  }

  // Filters folded on a phone are open on a wide screen.
  if (window.matchMedia("(min-width: 48rem)").matches) {
    for (const details of document.querySelectorAll("details[data-open-wide]")) {
      details.open = true;
    }
  }

  // A spec file dropped anywhere on the drop zone goes into its file input.
  for (const zone of document.querySelectorAll("[data-drop]")) {
    const input = zone.querySelector("input[type=file]");
    if (!input) continue;
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        input.dispatchEvent(new Event("change"));
      }
    });
  }
});
