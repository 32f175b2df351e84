// Preloaded into Omniboard (node -r) by `run.py board`: the page it serves gets lvmae's
// defaults, set in the browser only where the user has chosen nothing yet.
//  - The metrics plot selects every metric of a run on one linear axis (Omniboard's default),
//    so throughput, FLOPs or an effective rank would flatten the loss. Unless the user has
//    picked metrics before (Omniboard remembers the last selection), it selects the names in
//    LVMAE_BOARD_PLOT (a JSON list; run.py board sets the loss and top-1); the other metrics
//    stay one click away in its "Metrics" menu.
//  - Pictures in the artifact panel are sized to the panel instead of scrolling sideways.
// It wraps express() so that the first app created (Omniboard's top-level one) answers page
// requests (GET, HTML, not /api/ nor a file) with Omniboard's index.html plus these lines.
'use strict';
const fs = require('fs');
const path = require('path');
const Module = require('module');

const PLOT_KEY = 'undefined|MetricsPlotView|default';   // Omniboard 2.16's key (its dbKey prop is unset)
const plotNames = JSON.parse(process.env.LVMAE_BOARD_PLOT || '["train/loss"]');
const snippet = `<script>(function(){try{var k=${JSON.stringify(PLOT_KEY)};` +
  `var v=JSON.parse(localStorage.getItem(k)||'null')||{};if(!v.metricNameOptions){` +
  `v.metricNameOptions=${JSON.stringify(plotNames)}.map(function(n){return {label:n,value:n,selected:true};});` +
  `localStorage.setItem(k,JSON.stringify(v));}}catch(e){}})();</script>` +
  '<style>img[alt="image"]{max-width:100%;height:auto}</style>';

let page = null;
function indexPage() {
  if (page === null) {
    const omniboard = path.dirname(path.resolve(process.argv[1]));     // .../omniboard/dist (start.js)
    const html = fs.readFileSync(path.join(omniboard, '..', 'web', 'build', 'index.html'), 'utf8');
    page = html.replace('</head>', snippet + '</head>');
  }
  return page;
}

function withDefaults(req, res, next) {
  const last = req.path.split('/').pop();
  if (req.method !== 'GET' || req.path.includes('/api/') || last.includes('.') || !req.accepts('html')) {
    return next();
  }
  let html;
  try {
    html = indexPage();
  } catch (error) {       // another Omniboard layout: serve its page as it is, without defaults
    return next();
  }
  res.setHeader('Cache-Control', 'no-cache');
  res.type('html').send(html);
}

const load = Module._load;
let wrapped = null;
Module._load = function (request, ...rest) {
  const loaded = load.call(this, request, ...rest);
  if (request !== 'express' || typeof loaded !== 'function') return loaded;
  if (wrapped === null) {
    let first = true;
    wrapped = Object.assign(function express(...args) {
      const app = loaded(...args);
      if (first) {
        first = false;
        app.use(withDefaults);
      }
      return app;
    }, loaded);
  }
  return wrapped;
};
