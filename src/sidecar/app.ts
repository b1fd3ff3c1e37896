/**
 * The sidecar: the provider webhooks (webhook-routes.ts, answered before Express), and one Express 5 app
 * with the human approval pages, /healthz and /metrics. `paygate serve` mounts the MCP endpoint beside
 * it and runs the worker in the same process.
 *
 *   const runtime = await startRuntime({ webhookBaseUrl });
 *   const app = createSidecarApp(runtime);
 *   http.createServer(app).listen(8787, '127.0.0.1');
 */
import { createHmac } from 'node:crypto';
import type http from 'node:http';
import path from 'node:path';
import cookieParser from 'cookie-parser';
import express, { type NextFunction, type Request, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import {
  type Approval,
  approvalStanding,
  approve,
  auditDecisionRefused,
  getApproval,
  listApprovals,
  reject,
} from '../approvals/approvals.js';
import type { ActionParams, PayParams, RefundParams, ScheduleParams } from '../approvals/canonical.js';
import type { Queryable } from '../db/pool.js';
import { resolveSecret } from '../directory/encryption.js';
import { activeMethodForRail } from '../directory/payment-methods.js';
import { getTenant } from '../directory/tenants.js';
import { findUserByToken } from '../directory/users.js';
import { RefusedError, requestErrorStatus } from '../errors.js';
import { formatAmount } from '../money.js';
import { listAlerts } from '../payments/alerts.js';
import type { EngineDeps } from '../payments/context.js';
import { getInvoice } from '../payments/invoices.js';
import { getPayment, paymentsOfInvoice } from '../payments/payments.js';
import { COPY_SCRIPT, STYLESHEET } from './assets.js';
import { createSidecarMetrics, instrumentGateways, type SidecarMetrics } from './metrics.js';
import {
  createSession,
  csrfTokenFor,
  csrfTokenValid,
  endSession,
  findSession,
  SESSION_MAX_AGE_MS,
  type Session,
} from './sessions.js';
import {
  type DetailView,
  detailPage,
  type Fact,
  type ListItem,
  listPage,
  loginPage,
  messagePage,
  type PageUser,
  tokenPage,
} from './views.js';
import { createWebhookRoutes } from './webhook-routes.js';

/** What the sidecar needs of a Runtime (src/runtime.ts); a Runtime satisfies it as is. */
export interface SidecarRuntime {
  db: EngineDeps['db'];
  deps: EngineDeps;
  webhooks: { stripeSecret?: string; paypalWebhookId?: string };
  sandbox?: { paypalUrl: string };
  config?: { dataDir: string; secret?: string; live: boolean };
  logger?: {
    info(obj: object, msg?: string): void;
    warn(obj: object, msg?: string): void;
    error(obj: object, msg?: string): void;
  };
}

export interface SidecarOptions {
  /** The clock webhooks are verified against (tolerance, certificate validity); default the real one. */
  now?: () => Date;
  /** Where PayPal certificates come from; default: fetched from PayPal's hosts, cached under the data dir. */
  fetchCertificate?: (url: string) => Promise<string>;
  /** Cache directory for PayPal certificates; default `<dataDir>/paypal-certs`. */
  certCacheDir?: string;
  /** The sandbox's loopback origin whose certificate is accepted; default runtime.sandbox.paypalUrl. */
  paypalSandboxCertOrigin?: string;
  /**
   * The key /healthz?challenge= proves possession of; default resolveSecret(runtime.config) (the
   * PAYGATE_SECRET, or the data directory's). Without either, /healthz answers without a proof.
   */
  healthProofSecret?: string;
  /**
   * Failed logins and failed approval step-ups (a wrong personal access token) per client address and
   * window; default 10 per 15 minutes.
   */
  loginRateLimit?: { limit: number; windowMs: number };
  /** Mark cookies Secure even when the request looks like plain HTTP (e.g. behind a TLS proxy). */
  secureCookies?: boolean;
  /** Express's `trust proxy` setting, for X-Forwarded-* behind a reverse proxy; default off. */
  trustProxy?: boolean | number | string;
  /** Share a metrics registry; default a new one. */
  metrics?: SidecarMetrics;
  /** Time every provider call the engine makes (wraps runtime.deps.gateway in place); default true. */
  instrumentGateways?: boolean;
}

const SILENT = { info() {}, warn() {}, error() {} };
const APPROVAL_PATH = /^\/approvals(\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$/i;

/** A `node:http` request listener: `http.createServer(app)`. */
export interface SidecarApp extends http.RequestListener {
  metrics: SidecarMetrics;
}

export function createSidecarApp(runtime: SidecarRuntime, options: SidecarOptions = {}): SidecarApp {
  const { db, deps } = runtime;
  const logger = runtime.logger ?? SILENT;
  const metrics = options.metrics ?? createSidecarMetrics(db);
  if (options.instrumentGateways !== false) instrumentGateways(deps, metrics);
  const sandboxCertOrigin = options.paypalSandboxCertOrigin ?? runtime.sandbox?.paypalUrl;
  const app = express();
  app.disable('x-powered-by');
  if (options.trustProxy !== undefined) app.set('trust proxy', options.trustProxy);
  const secureRequest = (req: Request) => req.secure || options.secureCookies === true;

  // Built once per variant (building helmet parses its policy; per request it was a real cost on every
  // webhook): upgrading subresources to https would break a page served over plain http on loopback.
  const securityHeaders = (secure: boolean) =>
    helmet({
      contentSecurityPolicy: {
        useDefaults: true,
        directives: {
          'default-src': ["'self'"],
          'script-src': ["'self'"],
          'style-src': ["'self'"],
          'img-src': ["'self'"],
          'form-action': ["'self'"],
          'frame-ancestors': ["'none'"],
          'upgrade-insecure-requests': secure ? [] : null,
        },
      },
    });
  const overHttps = securityHeaders(true);
  const overHttp = securityHeaders(false);
  // For what a browser shows (pages, their assets, error pages); the machine endpoints (webhooks,
  // /healthz, /metrics) answer programs, which read no policy, and skip the work on every call.
  const forBrowsers: express.RequestHandler = (req, res, next) =>
    (secureRequest(req) ? overHttps : overHttp)(req, res, next);

  // --- health and metrics ---------------------------------------------------------------------------

  // `paygate mcp` asks with a fresh challenge before it hands out approve links for a port someone
  // else already listens on: only a process that holds this installation's secret can answer.
  let proofKey: Promise<string | null> | undefined;
  const healthProofKey = () => {
    proofKey ??=
      options.healthProofSecret !== undefined
        ? Promise.resolve(options.healthProofSecret)
        : runtime.config
          ? resolveSecret(runtime.config)
          : Promise.resolve(null);
    return proofKey;
  };

  app.get('/healthz', async (req, res) => {
    try {
      await db.pool.query('SELECT 1');
      const challenge = req.query.challenge;
      if (typeof challenge === 'string' && HEALTH_CHALLENGE.test(challenge)) {
        const key = await healthProofKey();
        if (key) return res.json({ ok: true, proof: healthProof(key, req.socket.localPort ?? 0, challenge) });
      }
      res.json({ ok: true });
    } catch {
      res.status(503).json({ ok: false, error: 'database unreachable' });
    }
  });

  app.get('/metrics', async (_req, res) => {
    try {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    } catch (error) {
      logger.error({ err: error }, 'metrics collection failed');
      res.status(503).type('text/plain').send('metrics unavailable\n');
    }
  });

  // --- approval pages -------------------------------------------------------------------------------

  app.get('/assets/approvals.css', forBrowsers, (_req, res) => {
    res.type('text/css').set('Cache-Control', 'public, max-age=3600').send(STYLESHEET);
  });
  app.get('/assets/approvals.js', forBrowsers, (_req, res) => {
    res.type('text/javascript').set('Cache-Control', 'public, max-age=3600').send(COPY_SCRIPT);
  });

  // Browsers ask for it on every page; an empty answer keeps a 404 out of every console.
  app.get('/favicon.ico', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=86400').status(204).end();
  });

  const pages = express.Router();
  pages.use(forBrowsers);
  pages.use(cookieParser());
  pages.use(express.urlencoded({ extended: false, limit: '16kb' }));
  pages.use((_req, res, next) => {
    // Pages show payment details and, once, an approval token: never cache them anywhere.
    res.set('Cache-Control', 'no-store');
    next();
  });

  const sessionCookie = (req: Request) => (secureRequest(req) ? '__Host-paygate_session' : 'paygate_session');
  const loginCookie = (req: Request) => (secureRequest(req) ? '__Host-paygate_login' : 'paygate_login');
  const cookieOptions = (req: Request, maxAge: number) => ({
    httpOnly: true,
    secure: secureRequest(req),
    sameSite: 'strict' as const,
    path: '/',
    maxAge,
  });
  // Cleared with the attributes it was set with: a browser ignores a __Host- cookie without Secure,
  // the clearing one included, and would keep the old cookie.
  const clearedCookie = (req: Request) => {
    const { maxAge: _maxAge, ...attributes } = cookieOptions(req, 0);
    return attributes;
  };

  const pageUser = (session: Session): PageUser => ({
    email: session.user.email,
    role: session.user.role,
    csrf: csrfTokenFor(session.secret),
  });

  type Authed = Request & { session?: Session };
  const requireSession = async (req: Authed, res: Response, next: NextFunction) => {
    const session = await findSession(db, req.cookies?.[sessionCookie(req)]);
    if (!session) {
      if (req.method === 'GET') {
        const next = APPROVAL_PATH.test(req.path) ? req.path : '/approvals';
        return res.redirect(303, `/login?next=${encodeURIComponent(next)}`);
      }
      return res
        .status(401)
        .send(messagePage('Please log in again', 'Your session has ended. Log in and try again.'));
    }
    req.session = session;
    if (req.method === 'POST' && !csrfTokenValid(session.secret, req.body?._csrf)) {
      return res
        .status(403)
        .send(
          messagePage(
            'That did not work',
            'The form was out of date or did not come from this page. Go back, reload the page, and try again.',
            pageUser(session),
          ),
        );
    }
    next();
  };

  const safeNext = (value: unknown) =>
    typeof value === 'string' && APPROVAL_PATH.test(value) ? value : '/approvals';

  const loginForm = (req: Request, res: Response, status: number, error?: string) => {
    let secret = req.cookies?.[loginCookie(req)] as string | undefined;
    if (!secret || !/^[A-Za-z0-9_-]{43}$/.test(secret)) {
      secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');
      res.cookie(loginCookie(req), secret, cookieOptions(req, 60 * 60 * 1000));
    }
    const next = safeNext(req.query.next ?? req.body?.next);
    res.status(status).send(loginPage(csrfTokenFor(secret), next, error));
  };

  pages.get('/login', async (req, res) => {
    const session = await findSession(db, req.cookies?.[sessionCookie(req)]);
    if (session) return res.redirect(303, safeNext(req.query.next));
    loginForm(req, res, 200);
  });

  const limit = options.loginRateLimit ?? { limit: 10, windowMs: 15 * 60 * 1000 };
  // One budget for every guess at a personal access token, at login and at an approval's step-up.
  // Only guesses count: a login that succeeds, or an approval whose token was right (even if the
  // engine then refuses the approval for another reason), gives its attempt back.
  const tokenGuessLimiter = rateLimit({
    windowMs: limit.windowMs,
    limit: limit.limit,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    skipSuccessfulRequests: true,
    requestWasSuccessful: (_req, res) => res.statusCode < 400 || res.locals.tokenAccepted === true,
    handler: (_req, res) => {
      res
        .status(429)
        .send(
          messagePage(
            'Too many attempts',
            'Too many attempts with a wrong personal access token from this address. Wait a few minutes, then try again. Nothing was approved.',
          ),
        );
    },
  });

  pages.post('/login', tokenGuessLimiter, async (req, res) => {
    if (!csrfTokenValid(req.cookies?.[loginCookie(req)], req.body?._csrf)) {
      return loginForm(req, res, 403, 'The login form was out of date. Please try again.');
    }
    const token = typeof req.body?.token === 'string' ? req.body.token.trim() : '';
    const user = token ? await findUserByToken(db, token) : null;
    if (!user) {
      logger.warn({ ip: req.ip }, 'approval page login refused');
      return loginForm(req, res, 401, 'That token was not accepted. Check it and try again.');
    }
    const session = await createSession(db, user, { ip: req.ip });
    res.clearCookie(loginCookie(req), clearedCookie(req));
    res.cookie(sessionCookie(req), session.secret, cookieOptions(req, SESSION_MAX_AGE_MS));
    res.redirect(303, safeNext(req.body?.next));
  });

  pages.post('/logout', requireSession, async (req: Authed, res) => {
    await endSession(db, req.session!);
    res.clearCookie(sessionCookie(req), clearedCookie(req));
    res.redirect(303, '/login');
  });

  /**
   * Step-up for approving. A session cookie is not enough to approve: browsers do not keep cookies
   * apart by port, so any page the human opens on another 127.0.0.1 port (a dev server an agent
   * started) receives it, and with it the CSRF token derived from it. The personal access token is
   * typed for every approval and never stored in the browser, so holding the cookie lets one look
   * and reject, never approve.
   */
  const tokenIsSessionUsers = async (session: Session, presented: unknown): Promise<boolean> => {
    const token = typeof presented === 'string' ? presented.trim() : '';
    return token !== '' && (await findUserByToken(db, token))?.id === session.user.id;
  };

  pages.get('/approvals', requireSession, async (req: Authed, res) => {
    const session = req.session!;
    const tenant = await getTenant(db, session.tenantId);
    // With each request, how many of its approvals count now (one whose human lost the right does not).
    const pending = await db.withTenant(session.tenantId, async (client) => {
      const approvals = await listApprovals(client, { status: 'pending' });
      return Promise.all(
        approvals.map(async (a) => ({
          approval: a,
          counted: a.approvedBy.length ? (await approvalStanding(client, a.id)).counted.length : 0,
        })),
      );
    });
    const items: ListItem[] = pending.map(({ approval: a, counted }) => ({
      id: a.id,
      amount: `${formatAmount(a.amountMinor, a.currency)} ${a.currency}`,
      action: ACTION_LABEL[a.action],
      summary: a.summary,
      expires: formatDate(a.expiresAt, tenant.timezone),
      progress: `${counted} of ${a.requiredApprovals} approval${a.requiredApprovals > 1 ? 's' : ''}`,
    }));
    const notice =
      req.query.done === 'rejected'
        ? 'The request was rejected. The agent will be told it cannot go ahead.'
        : req.query.done === 'revoked'
          ? 'The approval was revoked. Its approval code no longer works and no money moves.'
          : undefined;
    res.send(listPage(pageUser(session), items, notice));
  });

  const showDetail = async (req: Authed, res: Response, status: number, error?: string) => {
    const session = req.session!;
    const id = String(req.params.id);
    const view = await describe(session, id);
    if (!view) {
      return res
        .status(404)
        .send(
          messagePage(
            'Not found',
            'There is no such approval request in your organisation.',
            pageUser(session),
          ),
        );
    }
    res.status(status).send(detailPage(pageUser(session), view, error));
  };

  pages.get('/approvals/:id', requireSession, (req: Authed, res) => showDetail(req, res, 200));

  pages.post('/approvals/:id/approve', requireSession, tokenGuessLimiter, async (req: Authed, res) => {
    const session = req.session!;
    const id = String(req.params.id);
    if (!(await tokenIsSessionUsers(session, req.body?.token))) {
      logger.warn({ ip: req.ip, approvalId: id }, 'approval refused: personal access token did not match');
      await auditDecisionRefused(db, session.tenantId, session.user, id, {
        code: 'step_up_token_mismatch',
        message: 'the personal access token typed to approve is not the logged-in user’s',
        channel: 'approval_page',
        ip: req.ip ?? null,
      });
      return showDetail(
        req,
        res,
        401,
        `Nothing was approved: that is not your personal access token (${session.user.email}). Type your own token, the one you log in with, and approve again.`,
      );
    }
    res.locals.tokenAccepted = true;
    try {
      const result = await approve(db, session.tenantId, session.user, id);
      // Dual control: this approval is recorded and the page now says another person must approve.
      if (!result.approvalToken) return showDetail(req, res, 200);
      observeDecision(metrics, result.approval, 'approve');
      res.send(
        tokenPage(pageUser(session), {
          id,
          summary: result.approval.summary,
          token: result.approvalToken,
        }),
      );
    } catch (error) {
      if (error instanceof RefusedError) return showDetail(req, res, 409, refusalText(error));
      throw error;
    }
  });

  pages.post('/approvals/:id/reject', requireSession, async (req: Authed, res) => {
    const session = req.session!;
    const id = String(req.params.id);
    const reason =
      typeof req.body?.reason === 'string' && req.body.reason.trim()
        ? // PostgreSQL refuses NUL in text; a reason is prose, so it is dropped rather than refused.
          req.body.reason.replaceAll('\u0000', '').trim().slice(0, 500)
        : undefined;
    try {
      // Rejecting an approved request revokes it (its token stops working); the notice says which.
      const approval = await reject(db, session.tenantId, session.user, id, reason);
      observeDecision(metrics, approval, 'reject');
      res.redirect(303, `/approvals?done=${approval.revoked ? 'revoked' : 'rejected'}`);
    } catch (error) {
      if (error instanceof RefusedError) return showDetail(req, res, 409, refusalText(error));
      throw error;
    }
  });

  pages.get('/', (_req, res) => res.redirect(303, '/approvals'));

  async function describe(session: Session, id: string): Promise<DetailView | null> {
    const tenant = await getTenant(db, session.tenantId);
    return db.withTenant(session.tenantId, async (client) => {
      const approval = await getApproval(client, id);
      if (!approval) return null;
      return describeApproval(client, approval, session, tenant.timezone);
    });
  }

  app.use(pages);

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (res.headersSent) return;
    // The body parsers' refusals (too large, malformed, wrong charset) are the client's, answered as
    // such and not logged as our failure.
    const clientStatus = requestErrorStatus(err);
    if (clientStatus) {
      const message =
        clientStatus === 413 ? 'the request body is too large' : 'the request body could not be read';
      res
        .status(clientStatus)
        .set('Cache-Control', 'no-store')
        .send(messagePage('Request refused', `${message}.`));
      return;
    }
    logger.error({ err, path: req.path }, 'sidecar request failed');
    res
      .status(500)
      .set('Cache-Control', 'no-store')
      .send(
        messagePage(
          'Something went wrong',
          'The page could not be shown. Nothing was approved. Please try again.',
        ),
      );
  });

  // Webhooks are answered before Express sees the request (webhook-routes.ts); everything else is the app's.
  const webhookRoutes = createWebhookRoutes({
    deps,
    webhooks: runtime.webhooks,
    metrics,
    logger,
    now: options.now ?? (() => new Date()),
    ...(options.fetchCertificate ? { fetchCertificate: options.fetchCertificate } : {}),
    certCacheDir: options.certCacheDir ?? path.join(runtime.config?.dataDir ?? '.paygate', 'paypal-certs'),
    ...(sandboxCertOrigin ? { paypalSandboxCertOrigin: sandboxCertOrigin } : {}),
  });
  const sidecar: http.RequestListener = (req, res) => {
    if (!webhookRoutes.handle(req, res)) app(req, res);
  };
  return Object.assign(sidecar, { metrics });
}

const HEALTH_CHALLENGE = /^[0-9a-f]{32,128}$/;

/**
 * The answer to /healthz?challenge=: HMAC-SHA256 under the installation's secret, over a fixed label,
 * the port the request arrived on and the challenge. The port keeps a squatter from relaying the
 * challenge to a real paygate listening elsewhere and passing its answer off as its own.
 */
export function healthProof(secret: string, port: number, challenge: string): string {
  return createHmac('sha256', secret).update(`paygate healthz proof v1\n${port}\n${challenge}`).digest('hex');
}

const ACTION_LABEL: Record<Approval['action'], string> = {
  pay_invoice: 'Payment',
  schedule_payment: 'Scheduled payment',
  refund_payment: 'Refund',
};

const RAIL_LABEL: Record<string, string> = {
  stripe: 'Card (Stripe)',
  paypal: 'PayPal',
  ach: 'Bank transfer (ACH)',
};

const STATUS_LABEL: Record<Approval['status'], string> = {
  pending: 'Waiting for approval',
  approved: 'Approved',
  consumed: 'Approved and used',
  rejected: 'Rejected',
  expired: 'Expired',
};

function formatDate(date: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-US', {
    timeZone,
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: 'numeric',
    minute: '2-digit',
    timeZoneName: 'short',
  }).format(date);
}

function formatDay(day: string): string {
  return new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', dateStyle: 'full' }).format(
    new Date(`${day}T00:00:00Z`),
  );
}

function observeDecision(metrics: SidecarMetrics, approval: Approval, decision: 'approve' | 'reject') {
  const seconds = (Date.now() - approval.createdAt.getTime()) / 1000;
  metrics.approvalDecision.observe({ decision }, Math.max(0, seconds));
}

function refusalText(error: RefusedError): string {
  return `${error.message}${error.nextStep ? ` (${error.nextStep})` : ''}.`;
}

function methodText(m: {
  label: string | null;
  brand: string | null;
  last4: string | null;
  bankName: string | null;
}) {
  const name = m.label ?? m.bankName ?? (m.brand ? m.brand[0]!.toUpperCase() + m.brand.slice(1) : null);
  const last4 = m.last4 ? `ending in ${m.last4}` : null;
  return [name, last4].filter(Boolean).join(', ') || 'the method on file';
}

/** Everything a human needs to decide, in their words. */
async function describeApproval(
  client: Queryable,
  approval: Approval,
  session: Session,
  timeZone: string,
): Promise<DetailView> {
  const facts: Fact[] = [];
  const params: ActionParams = approval.params;
  let lead = approval.summary;
  let lastFailure: DetailView['lastFailure'];
  if (approval.action === 'pay_invoice' || approval.action === 'schedule_payment') {
    const p = params as PayParams | ScheduleParams;
    const invoice = await getInvoice(client, p.invoice_id);
    const method = await activeMethodForRail(client, p.method as 'stripe' | 'paypal' | 'ach');
    lead = `${approval.action === 'schedule_payment' ? 'Schedule a payment to' : 'Pay'} ${invoice?.vendorName ?? 'the vendor'} for invoice ${invoice?.number ?? ''}.`;
    facts.push({ label: 'Pay to', value: invoice?.vendorName ?? 'unknown vendor' });
    facts.push({
      label: 'Invoice',
      value: `${invoice?.number ?? p.invoice_id}${invoice?.dueDate ? ` (due ${formatDay(invoice.dueDate)})` : ''}`,
    });
    facts.push({
      label: 'Paid with',
      value: `${RAIL_LABEL[p.method] ?? p.method}: ${method ? methodText(method) : 'no method on file'}`,
    });
    facts.push({
      label: 'When',
      value:
        'scheduled_date' in p && approval.action === 'schedule_payment'
          ? formatDay(p.scheduled_date)
          : 'Right after approval, when the agent continues',
    });
    const failed = (await paymentsOfInvoice(client, p.invoice_id)).find((x) => x.status === 'failed');
    if (failed) {
      const alerts = await listAlerts(client, { paymentId: failed.id });
      const analysis = alerts.find((a) => a.analysis)?.analysis as
        | NonNullable<DetailView['lastFailure']>['analysis']
        | undefined;
      lastFailure = {
        when: formatDate(failed.createdAt, timeZone),
        message: failed.failureMessage ?? failed.failureCode ?? 'the payment failed',
        analysis: analysis ?? null,
      };
    }
  } else {
    const p = params as RefundParams;
    const payment = await getPayment(client, p.payment_id);
    lead = `Give back money from payment ${payment?.confirmationNumber ?? p.payment_id} to ${payment?.vendorName ?? 'the payer'}.`;
    if (payment) {
      const { rows } = await client.query<{
        label: string | null;
        brand: string | null;
        last4: string | null;
        bank_name: string | null;
      }>('SELECT label, brand, last4, bank_name FROM payment_methods WHERE id = $1', [
        payment.paymentMethodId,
      ]);
      const m = rows[0];
      facts.push({
        label: 'Refund of',
        value: `Payment ${payment.confirmationNumber} to ${payment.vendorName}`,
      });
      facts.push({ label: 'Invoice', value: payment.invoiceNumber });
      facts.push({
        label: 'Originally paid',
        value: `${formatAmount(payment.amountMinor, payment.currency)} ${payment.currency}${payment.paidAt ? ` on ${formatDate(payment.paidAt, timeZone)}` : ''}`,
      });
      facts.push({
        label: 'Returned through',
        value: `${RAIL_LABEL[payment.rail] ?? payment.rail}${m ? `: ${methodText({ ...m, bankName: m.bank_name })}` : ''}`,
      });
    }
    facts.push({ label: 'Reason', value: p.reason ?? 'none given' });
  }
  const { rows: agents } = await client.query<{ name: string; key_prefix: string }>(
    'SELECT name, key_prefix FROM agent_keys WHERE id = $1',
    [approval.agentKeyId],
  );
  facts.push({
    label: 'Requested by',
    value: agents[0] ? `Agent "${agents[0].name}" (key ${agents[0].key_prefix}…)` : 'an agent',
  });
  facts.push({ label: 'Requested', value: formatDate(approval.createdAt, timeZone) });
  if (approval.requestedApprover)
    facts.push({ label: 'Asked to approve', value: approval.requestedApprover });
  // Decisions that count now: one whose human has since lost the right is named as not counting.
  const { counted, lapsed } = await approvalStanding(client, approval.id);
  facts.push({
    label: 'Approvals',
    value: `${counted.length} of ${approval.requiredApprovals} needed${
      counted.length ? `: ${counted.join(', ')}` : lapsed.length ? '' : ' (nobody has approved yet)'
    }${lapsed.length ? `; no longer counted: ${lapsed.join('; ')}` : ''}`,
  });
  facts.push({ label: 'Expires', value: formatDate(approval.expiresAt, timeZone) });

  const user = session.user;
  const canRevoke = approval.status === 'approved' && (user.role === 'approver' || user.role === 'admin');
  let canDecide = approval.status === 'pending';
  let cannotDecideReason: string | undefined;
  if (approval.status !== 'pending') {
    // An approved request an approver can still revoke needs no explanation: its page offers the revoke.
    if (!canRevoke)
      cannotDecideReason = `This request is ${STATUS_LABEL[approval.status].toLowerCase()}; there is nothing left to decide.`;
  } else if (user.role === 'viewer') {
    canDecide = false;
    cannotDecideReason = 'You can see this request, but only approvers and admins can decide on it.';
  } else if (approval.approvedBy.includes(user.email)) {
    canDecide = false;
    const more = Math.max(1, approval.requiredApprovals - counted.length);
    cannotDecideReason = `You have approved this. It needs ${more} more approval${more > 1 ? 's' : ''} from someone else.`;
  }
  return {
    id: approval.id,
    heading:
      approval.status === 'pending'
        ? `${ACTION_LABEL[approval.action]} waiting for approval`
        : ACTION_LABEL[approval.action],
    amount: formatAmount(approval.amountMinor, approval.currency),
    currency: approval.currency,
    status: approval.status,
    statusLabel: STATUS_LABEL[approval.status],
    lead,
    facts,
    canDecide,
    canRevoke,
    ...(cannotDecideReason ? { cannotDecideReason } : {}),
    ...(lastFailure ? { lastFailure } : {}),
  };
}
