// Fits the RKME of a CSV off the page's thread (rkme.js), so the page stays responsive.
"use strict";
importScripts("/static/web/rkme.js");

self.onmessage = (event) => {
  try {
    const started = Date.now();
    const table = self.WharfRKME.parseCSV(event.data.text);
    const spec = self.WharfRKME.fit(table, event.data.options);
    self.postMessage({ spec: spec, n: table.n, d: table.d, ms: Date.now() - started });
  } catch (err) {
    self.postMessage({ error: err && err.message ? err.message : String(err) });
  }
};
