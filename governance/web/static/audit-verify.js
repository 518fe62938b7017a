// Checks an audit entry's inclusion proof in the browser (RFC 9162, section 2.1.3.2), and the checkpoint's
// Ed25519 signature where the browser's WebCrypto supports Ed25519. Nothing is trusted from the server
// beyond the bytes shown on the page.
(function () {
  "use strict";
  const el = document.getElementById("proof-data");
  const out = document.getElementById("browser-check");
  if (!el || !out) return;

  const hex = (s) => Uint8Array.from((s.match(/../g) || []).map((b) => parseInt(b, 16)));
  const toHex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
  const cat = (...parts) => {
    const n = parts.reduce((a, p) => a + p.length, 0);
    const r = new Uint8Array(n);
    let o = 0;
    for (const p of parts) { r.set(p, o); o += p.length; }
    return r;
  };
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

  async function rootFromProof(index, size, leaf, proof) {
    if (index >= size) throw new Error("index outside the tree");
    let fn = index, sn = size - 1, r = leaf;
    for (const p of proof) {
      if (sn === 0) throw new Error("proof too long");
      if ((fn & 1) === 1 || fn === sn) {
        r = await sha256(cat(new Uint8Array([1]), p, r));
        while (fn !== 0 && (fn & 1) === 0) { fn >>= 1; sn >>= 1; }
      } else {
        r = await sha256(cat(new Uint8Array([1]), r, p));
      }
      fn >>= 1; sn >>= 1;
    }
    if (sn !== 0) throw new Error("proof too short");
    return r;
  }

  async function checkSignature(note, verifierKey, rootHex) {
    const split = note.lastIndexOf("\n\n");
    const body = note.slice(0, split + 1);
    const lines = body.split("\n");
    if (toHex(b64(lines[2])) !== rootHex) return "the checkpoint names a different root";
    // name+kid+key: the base64 key may itself contain "+", so split at the first two only
    const [name, kid, ...rest] = verifierKey.split("+");
    const keyB64 = rest.join("+");
    const key = b64(keyB64).slice(1);
    for (const line of note.slice(split + 2).split("\n")) {
      if (!line.startsWith("\u2014 " + name + " ")) continue;
      const blob = b64(line.slice(line.lastIndexOf(" ") + 1));
      if (toHex(blob.slice(0, 4)) !== kid) continue;
      try {
        const pub = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
        const ok = await crypto.subtle.verify({ name: "Ed25519" }, pub, blob.slice(4), new TextEncoder().encode(body));
        return ok ? true : "the checkpoint's signature does NOT verify";
      } catch (e) {
        return null; // no Ed25519 in this browser's WebCrypto
      }
    }
    return "the checkpoint is not signed by the log's key";
  }

  async function run() {
    if (!window.crypto || !crypto.subtle) {
      out.textContent = "Your browser cannot check the proof here (WebCrypto needs https or localhost).";
      return;
    }
    const body = new TextEncoder().encode(document.getElementById("entry-body").textContent);
    const leaf = await sha256(cat(new Uint8Array([0]), body));
    const d = el.dataset;
    if (toHex(leaf) !== d.leafHash) {
      out.className = "bad";
      out.textContent = "Your browser found that the entry's bytes do NOT hash to the leaf hash.";
      return;
    }
    const proof = d.proof ? d.proof.split(",").map(hex) : [];
    let root;
    try {
      root = await rootFromProof(Number(d.seq), Number(d.treeSize), leaf, proof);
    } catch (e) {
      out.className = "bad";
      out.textContent = "Your browser found the proof malformed: " + e.message + ".";
      return;
    }
    if (toHex(root) !== d.rootHash) {
      out.className = "bad";
      out.textContent = "Your browser found that the proof does NOT lead to the signed root.";
      return;
    }
    const sig = await checkSignature(document.getElementById("checkpoint").textContent, d.verifierKey, d.rootHash);
    out.className = sig === true || sig === null ? "ok" : "bad";
    out.textContent = "Verified in your browser: entry " + d.seq + " is in the log of " + d.treeSize +
      " entries" + (sig === true ? ", and the checkpoint's Ed25519 signature is valid." :
      sig === null ? " (this browser cannot check Ed25519 signatures; the root matches the checkpoint)." :
      ", but " + sig + ".");
  }
  run().catch((e) => { out.className = "bad"; out.textContent = "The check failed: " + e; });
})();
