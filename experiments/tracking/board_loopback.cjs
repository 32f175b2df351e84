// Preloaded into Omniboard (node -r): its server calls app.listen(port), which binds every
// interface; this makes every listen() without a host bind 127.0.0.1 only.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const host = typeof args[1] === 'string' ? args[1] : null;
    if (host === null) args.splice(1, 0, '127.0.0.1');
  } else if (args[0] && typeof args[0] === 'object' && !args[0].path) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
