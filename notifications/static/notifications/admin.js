// Beacon's admin pages: behaviour that the Content-Security-Policy (script-src 'self') lets
// run only from a file, never from an inline handler.
"use strict";
// A <select data-submit-on-change> submits its form when changed (the template preview's locale).
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field instanceof HTMLSelectElement && field.dataset.submitOnChange !== undefined && field.form) {
    field.form.submit();
  }
});
