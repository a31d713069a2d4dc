import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ReportFormat, type ExportPostureReportRequest, type PostureService } from "@bulwark/contracts";
import { invalidArgument } from "@bulwark/core";
import type { PostureEvaluator } from "./evaluator.js";
import { tenantOfCall } from "./mesh.js";
import { renderHtml, renderJson } from "./render.js";

/**
 * bulwark.compliance.v1.PostureService: the tenant's latest posture report,
 * an evaluation on demand, and the report rendered for an auditor.
 */
export class PostureServiceImpl implements ServiceImpl<typeof PostureService> {
  constructor(private readonly evaluator: PostureEvaluator) {}

  async getPostureReport() {
    return { report: await this.evaluator.latestOrEvaluate(tenantOfCall()) };
  }

  async evaluatePosture() {
    return { report: await this.evaluator.evaluate(tenantOfCall()) };
  }

  async exportPostureReport(req: ExportPostureReportRequest) {
    const tenantId = tenantOfCall();
    if (req.format !== ReportFormat.JSON && req.format !== ReportFormat.HTML) throw invalidArgument("format", "must be REPORT_FORMAT_JSON or REPORT_FORMAT_HTML");
    const report = await this.evaluator.latestOrEvaluate(tenantId);
    const stamp = report.evaluateTime !== undefined ? timestampDate(report.evaluateTime).toISOString().replace(/[:.]/g, "-") : "unknown";
    const json = req.format === ReportFormat.JSON;
    return {
      contentType: json ? "application/json" : "text/html; charset=utf-8",
      fileName: `posture-${tenantId}-${stamp}.${json ? "json" : "html"}`,
      content: new TextEncoder().encode(json ? renderJson(report) : renderHtml(report)),
    };
  }
}
