/**
 * The approval pages, as plain server-rendered HTML: words for people who approve payments, not for
 * developers. Everything a human needs to decide is on one screen: how much, to whom, how, when, for
 * which invoice, who asked, who already approved, and until when the request stands.
 */
import { type Html, html } from './html.js';

export interface PageUser {
  email: string;
  role: string;
  csrf: string;
}

export function layout(title: string, body: Html, user?: PageUser): string {
  return `<!doctype html>${
    html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title} · paygate</title>
<link rel="stylesheet" href="/assets/approvals.css">
<script src="/assets/approvals.js" defer></script>
</head>
<body>
<header class="top">
  <a class="brand" href="/approvals">pay<span>gate</span><small>Approvals</small></a>
  ${
    user
      ? html`<div class="who"><span>${user.email}</span>
    <form method="post" action="/logout"><input type="hidden" name="_csrf" value="${user.csrf}"><button class="link" type="submit">Log out</button></form></div>`
      : ''
  }
</header>
<main>
${body}
<footer>No money moves until the required people approve. Every decision is recorded.</footer>
</main>
</body>
</html>`.value
  }`;
}

export function loginPage(csrf: string, next: string, error?: string): string {
  return layout(
    'Log in',
    html`<h1>Log in to approve payments</h1>
<div class="card">
  ${error ? html`<p class="notice error" role="alert">${error}</p>` : ''}
  <form method="post" action="/login" autocomplete="off">
    <input type="hidden" name="_csrf" value="${csrf}">
    <input type="hidden" name="next" value="${next}">
    <label for="token">Your personal access token</label>
    <input id="token" name="token" type="password" required autofocus spellcheck="false" autocapitalize="off">
    <p class="hint">It starts with <b>pgu_</b>. Your administrator gave it to you when your account was created. Never share it with an agent.</p>
    <div class="actions"><button class="primary" type="submit">Log in</button></div>
  </form>
</div>`,
  );
}

export interface ListItem {
  id: string;
  amount: string;
  action: string;
  summary: string;
  expires: string;
  progress: string;
}

export function listPage(user: PageUser, items: ListItem[], notice?: string): string {
  return layout(
    'Waiting for approval',
    html`<h1>Waiting for your approval</h1>
${notice ? html`<p class="notice ok">${notice}</p>` : ''}
${
  items.length === 0
    ? html`<div class="card"><p class="lead">Nothing is waiting for approval right now.</p></div>`
    : html`<ul class="list">${items.map(
        (item) => html`<li><a href="/approvals/${item.id}">
  <div class="row"><span>${item.action}</span><span class="sum">${item.amount}</span></div>
  <div class="what">${item.summary}</div>
  <div class="what">${item.progress} · expires ${item.expires}</div>
</a></li>`,
      )}</ul>`
}`,
    user,
  );
}

export interface Fact {
  label: string;
  value: string | Html;
}

export interface FailureView {
  when: string;
  message: string;
  analysis?: {
    summary?: string;
    likely_cause?: string;
    next_step?: string;
    retry_could_help?: boolean;
  } | null;
}

export interface DetailView {
  id: string;
  heading: string;
  amount: string;
  currency: string;
  status: string;
  statusLabel: string;
  lead: string;
  facts: Fact[];
  canDecide: boolean;
  cannotDecideReason?: string;
  lastFailure?: FailureView;
}

export function detailPage(user: PageUser, view: DetailView, error?: string): string {
  return layout(
    view.heading,
    html`<h1>${view.heading}</h1>
${error ? html`<p class="notice error" role="alert">${error}</p>` : ''}
<div class="card">
  <span class="pill ${view.status}">${view.statusLabel}</span>
  <p class="amount">${view.amount}<small>${view.currency}</small></p>
  <p class="lead">${view.lead}</p>
  <dl class="facts">${view.facts.map((f) => html`<dt>${f.label}</dt><dd>${f.value}</dd>`)}</dl>
  ${
    view.canDecide
      ? html`<div class="actions">
    <form method="post" action="/approvals/${view.id}/approve"><input type="hidden" name="_csrf" value="${user.csrf}"><button class="approve" type="submit">Approve</button></form>
    <form method="post" action="/approvals/${view.id}/reject"><input type="hidden" name="_csrf" value="${user.csrf}"><button class="reject" type="submit">Reject</button></form>
  </div>`
      : view.cannotDecideReason
        ? html`<p class="notice warn">${view.cannotDecideReason}</p>`
        : ''
  }
</div>
${view.lastFailure ? failureCard(view.lastFailure) : ''}
<p><a href="/approvals">← All requests waiting for approval</a></p>`,
    user,
  );
}

function failureCard(failure: FailureView): Html {
  const a = failure.analysis;
  return html`<div class="card">
  <h2>The last attempt to pay this invoice failed</h2>
  <p class="lead">${failure.when}: ${failure.message}</p>
  ${
    a
      ? html`<div class="analysis">
    ${a.summary ? html`<p><b>What happened:</b> ${a.summary}</p>` : ''}
    ${a.likely_cause ? html`<p><b>Likely cause:</b> ${a.likely_cause}</p>` : ''}
    ${a.next_step ? html`<p><b>Suggested next step:</b> ${a.next_step}</p>` : ''}
    ${a.retry_could_help === undefined ? '' : html`<p><b>Could trying again help?</b> ${a.retry_could_help ? 'Yes' : 'Probably not'}</p>`}
  </div>`
      : ''
  }
</div>`;
}

export function tokenPage(user: PageUser, view: { id: string; summary: string; token: string }): string {
  return layout(
    'Approved',
    html`<h1>Approved</h1>
<div class="card">
  <p class="notice ok">You approved: ${view.summary}</p>
  <p>This is the approval code for the agent. <b>It is shown only this once.</b></p>
  <div class="token"><code id="approval-token">${view.token}</code><button class="primary" type="button" data-copy="approval-token">Copy</button></div>
  <p class="hint">Paste it into the conversation with the agent if it asks for it. The agent may also notice the approval and finish by itself. The code works only for exactly this payment, once, and only for the agent that asked.</p>
</div>
<p><a href="/approvals">← All requests waiting for approval</a></p>`,
    user,
  );
}

export function messagePage(title: string, message: string, user?: PageUser): string {
  return layout(
    title,
    html`<h1>${title}</h1><div class="card"><p class="lead">${message}</p><p><a href="/approvals">← All requests waiting for approval</a></p></div>`,
    user,
  );
}
