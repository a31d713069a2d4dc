import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ControlState, PostureEvaluatedSchema, PostureReportSchema, type PostureReport } from "@bulwark/contracts";
import { describeError, type Logger } from "@bulwark/core";
import type { ComplianceContext } from "../context.js";
import type { AuditCheckpointSource } from "./checkpoint.js";
import { collectFacts } from "./collect.js";
import { defaultThresholds, evaluateControls, type PostureThresholds } from "./controls.js";

/**
 * Evaluates a tenant's posture and keeps the latest report: collect the
 * facts, evaluate every control, take the audit checkpoint, store the
 * report (one row per tenant, replaced) and, when a control changed state
 * since the previous report, publish bulwark.compliance.posture.evaluated
 * in the same transaction.
 */
export class PostureEvaluator {
  constructor(
    private readonly ctx: ComplianceContext,
    private readonly checkpoints: AuditCheckpointSource,
    private readonly logger: Logger,
    private readonly thresholds: PostureThresholds = defaultThresholds,
  ) {}

  /** Per tenant on this replica: the evaluation running, and the one that runs next for those who asked meanwhile. */
  readonly #runs = new Map<string, { running: Promise<PostureReport>; next?: Promise<PostureReport> }>();

  /**
   * Evaluates now; UNAVAILABLE when identity (the source of most controls)
   * could not be read, leaving the previous report in place. Each
   * evaluation pages through every user and key of the tenant, so a
   * tenant's callers must not multiply that load by asking at once: one
   * evaluation runs per tenant, and everyone who asks while it runs shares
   * the single one that starts after it (so each caller's report is still
   * taken after they asked).
   */
  evaluate(tenantId: string): Promise<PostureReport> {
    const runs = this.#runs.get(tenantId);
    if (runs === undefined) return this.#start(tenantId);
    runs.next ??= runs.running.catch(() => undefined).then(() => this.#start(tenantId));
    return runs.next;
  }

  #start(tenantId: string): Promise<PostureReport> {
    const running = this.#evaluateNow(tenantId).finally(() => {
      const runs = this.#runs.get(tenantId);
      if (runs?.running !== running) return;
      if (runs.next === undefined) this.#runs.delete(tenantId);
    });
    const runs = this.#runs.get(tenantId);
    if (runs === undefined) this.#runs.set(tenantId, { running });
    else {
      runs.running = running;
      delete runs.next;
    }
    return running;
  }

  async #evaluateNow(tenantId: string): Promise<PostureReport> {
    const facts = await collectFacts(this.ctx, tenantId, this.logger);
    if (facts.unavailable.has("identity")) throw new ConnectError("identity is unavailable: the posture could not be evaluated", Code.Unavailable);
    const controls = evaluateControls(facts, this.thresholds);
    const checkpoint = await this.checkpoints.checkpoint(tenantId).catch((err: unknown) => {
      this.logger.warn({ tenantId, err: describeError(err) }, "no audit checkpoint for the posture report");
      return undefined;
    });
    const passed = controls.filter((c) => c.state === ControlState.PASS).length;
    const report = create(PostureReportSchema, {
      tenantId,
      evaluateTime: timestampFromDate(facts.now),
      controls,
      passed,
      failed: controls.length - passed,
      auditCheckpoint: checkpoint ?? { available: false },
    });
    await this.ctx.deps.db.transaction(async (em) => {
      const previous = (await em.execute<{ report: Buffer }[]>("select report from posture_reports where tenant_id = ? for update", [tenantId]))[0];
      const before = previous === undefined ? undefined : new Map(fromBinary(PostureReportSchema, previous.report).controls.map((c) => [c.id, c.state]));
      await em.execute(
        `insert into posture_reports (tenant_id, evaluated_at, passed, failed, report) values (?, ?, ?, ?, ?)
         on conflict (tenant_id) do update set evaluated_at = excluded.evaluated_at, passed = excluded.passed, failed = excluded.failed, report = excluded.report`,
        [tenantId, facts.now, report.passed, report.failed, Buffer.from(toBinary(PostureReportSchema, report))],
      );
      if (before === undefined || controls.some((c) => before.get(c.id) !== c.state)) {
        await this.ctx.deps.events.publish(em, {
          aggregate: "posture",
          verb: "evaluated",
          aggregateId: tenantId,
          schema: PostureEvaluatedSchema,
          payload: create(PostureEvaluatedSchema, {
            evaluateTime: report.evaluateTime,
            passed: controls.filter((c) => c.state === ControlState.PASS).map((c) => c.id),
            failed: controls.filter((c) => c.state !== ControlState.PASS).map((c) => c.id),
            // States only: the failing items stay in the report, not on the bus.
            controls: controls.map((c) => ({ ...c, failingItems: [] })),
          }),
        });
      }
    });
    this.ctx.deps.relay.nudge();
    return report;
  }

  /** The latest stored report of the tenant, if any. */
  async latest(tenantId: string): Promise<PostureReport | undefined> {
    const row = (await this.ctx.deps.db.transaction((em) => em.execute<{ report: Buffer }[]>("select report from posture_reports where tenant_id = ?", [tenantId])))[0];
    return row === undefined ? undefined : fromBinary(PostureReportSchema, row.report);
  }

  /** The latest report, evaluated first if there is none. */
  async latestOrEvaluate(tenantId: string): Promise<PostureReport> {
    return (await this.latest(tenantId)) ?? this.evaluate(tenantId);
  }
}
