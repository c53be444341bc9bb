// A real SMTP server Beacon did not write (nodemailer's smtp-server), for the test suite.
//
// Configured by the JSON in BEACON_SMTP_SERVER (all optional):
//   {"cert": PEM path, "key": PEM path,      -> STARTTLS offered on this certificate
//    "user": "...", "password": "...",       -> AUTH PLAIN/LOGIN required before MAIL
//    "hide8BITMIME": true}                   -> a server that does not advertise 8BITMIME
// Listens on 127.0.0.1 on a free port and prints `LISTENING <port>`, then one JSON line per
// accepted message: envelope, MAIL FROM parameters, EHLO name, TLS, login and the raw message
// (base64). Exits when stdin closes, so it never outlives the test that started it.
"use strict";

const fs = require("fs");
const { SMTPServer } = require("smtp-server");

const options = JSON.parse(process.env.BEACON_SMTP_SERVER || "{}");
const tls = options.cert && options.key;
const auth = Boolean(options.user);

const server = new SMTPServer({
  secure: false,
  key: tls ? fs.readFileSync(options.key) : undefined,
  cert: tls ? fs.readFileSync(options.cert) : undefined,
  hideSTARTTLS: !tls,
  hide8BITMIME: Boolean(options.hide8BITMIME),
  authMethods: auth ? ["PLAIN", "LOGIN"] : [],
  authOptional: !auth,
  allowInsecureAuth: false,
  logger: false,
  onAuth(credentials, session, callback) {
    if (credentials.username === options.user && credentials.password === options.password) {
      return callback(null, { user: credentials.username });
    }
    return callback(new Error("Invalid username or password"));
  },
  onData(stream, session, callback) {
    const chunks = [];
    stream.on("data", (chunk) => chunks.push(chunk));
    stream.on("end", () => {
      const record = {
        mail_from: session.envelope.mailFrom.address,
        mail_args: session.envelope.mailFrom.args || {},
        rcpt_to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
        ehlo: session.hostNameAppearsAs,
        secure: session.secure,
        user: session.user || null,
        raw: Buffer.concat(chunks).toString("base64"),
      };
      process.stdout.write(JSON.stringify(record) + "\n");
      callback(null, "Message queued");
    });
  },
});

server.on("error", (error) => process.stderr.write(`smtp-server: ${error.message}\n`));
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${server.server.address().port}\n`);
});
process.stdin.on("end", () => server.close(() => process.exit(0)));
process.stdin.resume();
