/**
 * The approval page's only stylesheet and script, served as files (/assets/...) so the Content
 * Security Policy can forbid inline scripts and styles entirely. Kept as strings in the module so the
 * build (tsc) ships them without a copy step.
 */

export const STYLESHEET = `
:root {
  --ink: #1c2330; --muted: #5b6578; --line: #e3e7ee; --bg: #f5f7fa; --card: #fff;
  --brand: #2446c7; --ok: #117a45; --ok-bg: #e7f6ee; --bad: #b42318; --bad-bg: #fdecea; --warn-bg: #fff6e0;
  color-scheme: light;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
header.top {
  display: flex; align-items: center; justify-content: space-between; gap: 12px;
  padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line);
}
header.top .brand { font-weight: 700; color: var(--ink); text-decoration: none; letter-spacing: .2px; white-space: nowrap; }
header.top .brand small { font-weight: 500; color: var(--muted); margin-left: 6px; }
header.top .brand span { color: var(--brand); }
header.top .who { display: flex; align-items: center; gap: 10px; color: var(--muted); font-size: 14px; min-width: 0; }
header.top .who span { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
a { color: var(--brand); }
main > p > a { text-decoration: none; font-weight: 500; }
header.top form { margin: 0; }
main { max-width: 640px; margin: 0 auto; padding: 20px 16px 48px; }
h1 { font-size: 22px; margin: 8px 0 16px; }
h2 { font-size: 17px; margin: 24px 0 8px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 18px; margin-bottom: 16px; }
.amount { font-size: 32px; font-weight: 700; letter-spacing: -.5px; margin: 2px 0 2px; }
.amount small { font-size: 18px; font-weight: 600; color: var(--muted); margin-left: 4px; }
.lead { color: var(--muted); margin: 0 0 8px; }
dl.facts { display: grid; grid-template-columns: minmax(110px, 35%) 1fr; gap: 10px 14px; margin: 14px 0 0; }
dl.facts dt { color: var(--muted); font-size: 14px; }
dl.facts dd { margin: 0; font-weight: 500; overflow-wrap: anywhere; }
.pill { display: inline-block; font-size: 13px; font-weight: 600; padding: 2px 10px; border-radius: 999px; background: var(--bg); border: 1px solid var(--line); }
.pill.pending { background: var(--warn-bg); border-color: #f2d58c; }
.pill.approved, .pill.consumed { background: var(--ok-bg); border-color: #a6dcbf; color: var(--ok); }
.pill.rejected, .pill.expired { background: var(--bad-bg); border-color: #f3b8b2; color: var(--bad); }
.actions { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 18px; }
.actions form { margin: 0; flex: 1 1 200px; }
button, .button {
  display: inline-block; width: 100%; min-height: 48px; padding: 12px 18px; border-radius: 10px;
  border: 1px solid transparent; font: inherit; font-weight: 600; cursor: pointer; text-align: center; text-decoration: none;
}
button.approve { background: var(--ok); color: #fff; }
button.reject { background: var(--card); color: var(--bad); border-color: #f3b8b2; }
button.primary { background: var(--brand); color: #fff; }
button.link { white-space: nowrap; width: auto; min-height: 0; padding: 6px 10px; background: none; border: 1px solid var(--line); color: var(--ink); font-weight: 500; font-size: 14px; }
label { display: block; font-weight: 600; margin: 12px 0 6px; }
input[type=password], input[type=text] {
  width: 100%; min-height: 48px; padding: 10px 12px; font: inherit; border: 1px solid #c9d0db; border-radius: 10px; background: #fff;
}
input:focus, button:focus { outline: 3px solid #9db2ff; outline-offset: 1px; }
.hint { color: var(--muted); font-size: 14px; margin: 6px 0 0; }
.notice { border-radius: 10px; padding: 12px 14px; margin: 0 0 16px; }
.notice.error { background: var(--bad-bg); color: var(--bad); }
.notice.ok { background: var(--ok-bg); color: var(--ok); }
.notice.warn { background: var(--warn-bg); }
ul.list { list-style: none; padding: 0; margin: 0; }
ul.list li a {
  display: block; background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 14px 16px;
  margin-bottom: 10px; color: var(--ink); text-decoration: none;
}
ul.list li a:hover { border-color: var(--brand); }
ul.list .row { display: flex; justify-content: space-between; align-items: baseline; gap: 10px; }
ul.list .sum { font-weight: 700; font-size: 18px; white-space: nowrap; }
ul.list .what { color: var(--muted); font-size: 14px; margin-top: 2px; }
.token { display: flex; gap: 8px; align-items: stretch; margin: 10px 0; }
.token code {
  flex: 1; display: block; padding: 12px; border-radius: 10px; background: #0f1729; color: #e6edf7;
  font: 14px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; user-select: all;
}
.token button { width: auto; min-width: 88px; }
.analysis { border-left: 4px solid var(--brand); padding-left: 12px; }
.analysis p { margin: 4px 0; }
footer { color: var(--muted); font-size: 13px; text-align: center; margin-top: 28px; }
@media (max-width: 420px) { .amount { font-size: 28px; } dl.facts { grid-template-columns: 1fr; gap: 2px; } dl.facts dd { margin-bottom: 8px; } }
`;

/** The copy button: copies the token shown once, with a fallback where the clipboard API is missing. */
export const COPY_SCRIPT = `
document.addEventListener('click', function (event) {
  var button = event.target.closest('[data-copy]');
  if (!button) return;
  var source = document.getElementById(button.getAttribute('data-copy'));
  if (!source) return;
  var text = source.textContent.trim();
  function done() {
    var label = button.textContent;
    button.textContent = 'Copied';
    setTimeout(function () { button.textContent = label; }, 2000);
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () { select(source); });
  } else {
    select(source);
    try { document.execCommand('copy'); done(); } catch (e) {}
  }
  function select(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
});
`;
