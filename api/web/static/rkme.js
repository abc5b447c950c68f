// The RKME of a numeric table, computed in the browser: the user's rows never leave it; only
// the spec (K weighted points) is sent with the search. The method is wharf spec fit's
// (specification/_fit.py): k-means++ seeds and the Lloyd centroids grown from them as two
// starts, beta by the QP on the probability simplex, then preconditioned gradient steps on z
// with beta refitted after each, in float64. The spec is written in the reference's JSON.
"use strict";

(function () {
  const MAX_REDUCED_SET_SIZE = 1310720; // K·d, the reference's cap
  const TABLE_SPEC_TYPE = "RKMETableSpecification";

  // A small seeded generator (mulberry32): the same file gives the same spec.
  function generator(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  // A numeric CSV, one optional header row: {data: Float64Array(n·d), n, d}; throws an Error
  // that says which line is wrong.
  function parseCSV(text) {
    const lines = text.split(/\r\n|\n|\r/);
    const values = [];
    let d = 0;
    let n = 0;
    let seenRow = false;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if (!line.trim()) continue;
      const cells = line.split(",");
      const row = new Array(cells.length);
      let numeric = true;
      let bad = "";
      for (let j = 0; j < cells.length; j++) {
        const cell = cells[j].trim().replace(/^"(.*)"$/, "$1").trim();
        const value = cell === "" ? NaN : Number(cell);
        if (!Number.isFinite(value)) {
          numeric = false;
          bad = cell;
          break;
        }
        row[j] = value;
      }
      if (!numeric) {
        if (!seenRow) {
          seenRow = true; // a header row
          continue;
        }
        throw new Error(`line ${i + 1}: "${bad.slice(0, 40)}" is not a number; the CSV must be numeric (one optional header row, no empty cells)`);
      }
      seenRow = true;
      if (n === 0) d = row.length;
      else if (row.length !== d) {
        throw new Error(`line ${i + 1}: ${row.length} columns, but the first data row has ${d}`);
      }
      for (let j = 0; j < d; j++) values.push(row[j]);
      n++;
    }
    if (n === 0) throw new Error("the file has no data rows");
    return { data: Float64Array.from(values), n: n, d: d };
  }

  function effectivePoints(k, n, d) {
    if (k * d > MAX_REDUCED_SET_SIZE) k = Math.max(20, Math.floor(MAX_REDUCED_SET_SIZE / d));
    if (k >= n) k = Math.max(1, Math.floor((2 * n) / 3));
    return k;
  }

  function sqNorms(x, rows, d) {
    const out = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += x[i * d + j] * x[i * d + j];
      out[i] = s;
    }
    return out;
  }

  // s_i = Σ_l k(z_i, x_l) and A_i = Σ_l k(z_i, x_l) x_l: all a fit needs from the data.
  function rowSums(z, k, x, xn, n, d, gamma) {
    const zn = sqNorms(z, k, d);
    const s = new Float64Array(k);
    const A = new Float64Array(k * d);
    for (let i = 0; i < k; i++) {
      const zi = i * d;
      let si = 0;
      for (let l = 0; l < n; l++) {
        const xl = l * d;
        let dot = 0;
        for (let j = 0; j < d; j++) dot += z[zi + j] * x[xl + j];
        const d2 = zn[i] + xn[l] - 2 * dot;
        const kv = Math.exp(-gamma * (d2 > 0 ? d2 : 0));
        si += kv;
        for (let j = 0; j < d; j++) A[zi + j] += kv * x[xl + j];
      }
      s[i] = si;
    }
    return { s: s, A: A };
  }

  function gram(z, k, d, gamma) {
    const K = new Float64Array(k * k);
    for (let i = 0; i < k; i++) {
      K[i * k + i] = 1;
      for (let j = i + 1; j < k; j++) {
        let d2 = 0;
        for (let t = 0; t < d; t++) {
          const diff = z[i * d + t] - z[j * d + t];
          d2 += diff * diff;
        }
        const v = Math.exp(-gamma * d2);
        K[i * k + j] = v;
        K[j * k + i] = v;
      }
    }
    return K;
  }

  // Euclidean projection onto the probability simplex.
  function project(v) {
    const u = Float64Array.from(v).sort(); // ascending: walk it from the top
    let cumulative = 0;
    let theta = 0;
    for (let i = 0; i < u.length; i++) {
      const ui = u[u.length - 1 - i];
      cumulative += ui;
      const t = (cumulative - 1) / (i + 1);
      if (ui - t > 0) theta = t;
    }
    const out = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = Math.max(v[i] - theta, 0);
    return out;
  }

  // min ½βᵀKβ − cᵀβ on the simplex by accelerated projected gradient (FISTA); returns β and
  // βᵀKβ − 2cᵀβ (the MMD² to the data, less a constant).
  function simplexQP(K, c, k, start) {
    let L = 0; // the largest row sum bounds the largest eigenvalue of K (entries ≥ 0)
    for (let i = 0; i < k; i++) {
      let r = 0;
      for (let j = 0; j < k; j++) r += K[i * k + j];
      L = Math.max(L, r);
    }
    let beta = start ? Float64Array.from(start) : new Float64Array(k).fill(1 / k);
    let y = Float64Array.from(beta);
    let t = 1;
    const grad = new Float64Array(k);
    for (let iter = 0; iter < 600; iter++) {
      for (let i = 0; i < k; i++) {
        let g = -c[i];
        for (let j = 0; j < k; j++) g += K[i * k + j] * y[j];
        grad[i] = y[i] - g / L;
      }
      const next = project(grad);
      const tNext = (1 + Math.sqrt(1 + 4 * t * t)) / 2;
      let change = 0;
      for (let i = 0; i < k; i++) {
        y[i] = next[i] + ((t - 1) / tNext) * (next[i] - beta[i]);
        change = Math.max(change, Math.abs(next[i] - beta[i]));
      }
      beta = next;
      t = tNext;
      if (change < 1e-9) break;
    }
    let quad = 0;
    let lin = 0;
    for (let i = 0; i < k; i++) {
      let r = 0;
      for (let j = 0; j < k; j++) r += K[i * k + j] * beta[j];
      quad += beta[i] * r;
      lin += c[i] * beta[i];
    }
    return { beta: beta, objective: quad - 2 * lin, K: K };
  }

  function betaStep(z, k, d, gamma, s, n, start) {
    const c = new Float64Array(k);
    for (let i = 0; i < k; i++) c[i] = s[i] / n;
    return simplexQP(gram(z, k, d, gamma), c, k, start);
  }

  // One preconditioned gradient step on z with β fixed (specification/_fit.py's _z_step).
  function zStep(z, k, d, beta, K, s, A, n, step) {
    const out = new Float64Array(k * d);
    for (let i = 0; i < k; i++) {
      let wsum = 0;
      const pull = new Float64Array(d);
      for (let j = 0; j < k; j++) {
        const w = K[i * k + j] * beta[j];
        wsum += w;
        for (let t = 0; t < d; t++) pull[t] += w * z[j * d + t];
      }
      let mass = s[i] / n + wsum - beta[i];
      if (!(mass > 1e-300)) mass = 1e-300;
      for (let t = 0; t < d; t++) {
        const zi = z[i * d + t];
        const repulse = wsum * zi - pull[t];
        const attract = (s[i] * zi - A[i * d + t]) / n;
        out[i * d + t] = zi + (step * (repulse - attract)) / mass;
      }
    }
    return out;
  }

  // k-means++ seeds on a bounded subsample, and the Lloyd centroids grown from them.
  function starts(x, n, d, k, random, iters) {
    const m = Math.min(n, Math.max(50 * k, 5000));
    let rows = Array.from({ length: n }, (_, i) => i);
    if (m < n) {
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [rows[i], rows[j]] = [rows[j], rows[i]];
      }
      rows = rows.slice(0, m);
    }
    const dist = (a, zb, b) => {
      let s = 0;
      for (let t = 0; t < d; t++) {
        const diff = x[a * d + t] - zb[b * d + t];
        s += diff * diff;
      }
      return s;
    };
    const seeds = new Float64Array(k * d);
    const first = rows[Math.min(Math.floor(random() * m), m - 1)];
    seeds.set(x.subarray(first * d, first * d + d), 0);
    const d2 = rows.map((r) => dist(r, seeds, 0));
    for (let i = 1; i < k; i++) {
      let total = 0;
      for (const v of d2) total += v;
      let target = random() * total;
      let pick = m - 1;
      for (let r = 0; r < m; r++) {
        target -= d2[r];
        if (target < 0) {
          pick = r;
          break;
        }
      }
      seeds.set(x.subarray(rows[pick] * d, rows[pick] * d + d), i * d);
      for (let r = 0; r < m; r++) d2[r] = Math.min(d2[r], dist(rows[r], seeds, i));
    }
    const z = Float64Array.from(seeds);
    for (let it = 0; it < iters; it++) {
      const sums = new Float64Array(k * d);
      const counts = new Float64Array(k);
      for (const r of rows) {
        let best = 0;
        let bestD = Infinity;
        for (let i = 0; i < k; i++) {
          const v = dist(r, z, i);
          if (v < bestD) {
            bestD = v;
            best = i;
          }
        }
        counts[best]++;
        for (let t = 0; t < d; t++) sums[best * d + t] += x[r * d + t];
      }
      for (let i = 0; i < k; i++) {
        if (counts[i] > 0) for (let t = 0; t < d; t++) z[i * d + t] = sums[i * d + t] / counts[i];
      }
    }
    return iters > 0 ? [seeds, z] : [seeds];
  }

  // The spec of the table (n rows of d numbers, row-major), as the reference's JSON object.
  function fit(table, options) {
    const opts = options || {};
    const gamma = opts.gamma || 0.1;
    const steps = opts.steps === undefined ? 10 : opts.steps;
    const random = generator(opts.seed || 0);
    const n = table.n;
    const d = table.d;
    const k = effectivePoints(opts.points || 100, n, d);
    const shift = new Float64Array(d);
    for (let l = 0; l < n; l++) for (let t = 0; t < d; t++) shift[t] += table.data[l * d + t] / n;
    const x = new Float64Array(n * d);
    for (let l = 0; l < n; l++) for (let t = 0; t < d; t++) x[l * d + t] = table.data[l * d + t] - shift[t];
    const xn = sqNorms(x, n, d);
    let best = null;
    for (const z0 of starts(x, n, d, k, random, opts.initIters === undefined ? 8 : opts.initIters)) {
      const sums = rowSums(z0, k, x, xn, n, d, gamma);
      const qp = betaStep(z0, k, d, gamma, sums.s, n, null);
      if (best === null || qp.objective < best.qp.objective) best = { z: z0, sums: sums, qp: qp };
    }
    let step = 1;
    for (let it = 0; it < steps; it++) {
      const z = zStep(best.z, k, d, best.qp.beta, best.qp.K, best.sums.s, best.sums.A, n, step);
      const sums = rowSums(z, k, x, xn, n, d, gamma);
      const qp = betaStep(z, k, d, gamma, sums.s, n, best.qp.beta);
      if (qp.objective <= best.qp.objective) {
        best = { z: z, sums: sums, qp: qp };
        step = Math.min(1, step * 1.5);
      } else {
        step *= 0.5;
      }
    }
    const points = [];
    for (let i = 0; i < k; i++) {
      const row = new Array(d);
      for (let t = 0; t < d; t++) row[t] = best.z[i * d + t] + shift[t];
      points.push(row);
    }
    return {
      z: points,
      beta: Array.from(best.qp.beta),
      gamma: gamma,
      num_points: n,
      type: TABLE_SPEC_TYPE,
    };
  }

  // On a page and in a worker alike.
  self.WharfRKME = { parseCSV: parseCSV, fit: fit, effectivePoints: effectivePoints };
})();
