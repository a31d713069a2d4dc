import { Code, ConnectError, createConnectRouter, createContextValues, type ConnectRouter } from "@connectrpc/connect";
import { encodeEnvelope, type UniversalHandler, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { JsonReadOptions } from "@bufbuild/protobuf";
import type { Logger } from "@bulwark/core";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { constants as h2constants } from "node:http2";
import { peerAddressKey } from "./client-address.js";
import { resetResponseKey } from "./pipeline.js";

/** What an undecodable request is told, on every protocol (no bytes echoed). */
export const undecodableMessage = "request: cannot be decoded";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

/** How the connect-node side of the server is set up. */
export interface ConnectHandlerOptions {
  readonly routes: (router: ConnectRouter) => void;
  /** Requests for any other path (plain GET resources, 404). */
  readonly fallback: (req: NodeRequest, res: NodeResponse) => void;
  /** The largest message accepted, after decompression. */
  readonly readMaxBytes: number;
  readonly logger: Logger;
}

/**
 * The Connect, gRPC-Web and non-fast-path gRPC side of the server: the same
 * job as connect-node's `connectNodeAdapter`, written out so that the
 * server can (1) put the connection's peer address into every call's
 * context values, (2) bound every message after decompression
 * (`readMaxBytes` is also zlib's `maxOutputLength`, so a gzip bomb stops
 * inflating at the bound), (3) refuse invalid UTF-8 in JSON bodies rather
 * than silently replacing it, (4) answer a request without a Host header
 * instead of throwing out of the request listener, and (5) rewrite one
 * error connect-es gets wrong for us: see `decodeErrorsAsInvalidArgument`.
 */
export function connectNodeHandler(opts: ConnectHandlerOptions): (req: NodeRequest, res: NodeResponse) => void {
  const router = createConnectRouter({
    readMaxBytes: opts.readMaxBytes,
    acceptCompression: [compressionGzip, compressionBrotli],
    // connect-es reads `textDecoder` from its JSON options (serialization.js)
    // though the option's type does not list it; a fatal decoder makes
    // invalid UTF-8 an INVALID_ARGUMENT instead of U+FFFD characters.
    jsonOptions: { textDecoder: new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }) } as Partial<JsonReadOptions>,
  });
  opts.routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const h of router.handlers) paths.set(h.requestPath, decodeErrorsAsInvalidArgument(h));
  return (req, res) => {
    const handler = paths.get((req.url ?? "").split("?", 2)[0] ?? "");
    if (handler === undefined) {
      opts.fallback(req, res);
      return;
    }
    let uReq;
    try {
      const values = createContextValues().set(peerAddressKey, req.socket.remoteAddress).set(resetResponseKey, () => resetResponse(res));
      uReq = universalRequestFromNodeRequest(req as http.IncomingMessage, res as http.ServerResponse, undefined, values);
    } catch {
      // connect-node throws when the request names no authority (an
      // HTTP/1.0 request without Host): answer it rather than crash.
      res.writeHead(400, { "content-type": "text/plain" });
      res.end("bad request");
      return;
    }
    handler(uReq)
      .then((uRes) => universalResponseToNodeResponse(uRes, res as http.ServerResponse))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        opts.logger.debug({ rpc: `${handler.service.typeName}/${handler.method.name}`, reason: ConnectError.from(reason).rawMessage }, "response not written");
      });
  };
}

/** Ends a response that can no longer finish: RST_STREAM CANCEL on HTTP/2 (a client reads it as cancelled, not as a truncated success), the connection on HTTP/1.1. */
function resetResponse(res: NodeResponse): void {
  if ("stream" in res) {
    if (!res.stream.destroyed) res.stream.close(h2constants.NGHTTP2_CANCEL);
  } else if (!res.destroyed) {
    res.destroy();
  }
}

/**
 * connect-es 2.1 reports a request that is not valid protobuf binary as
 * INTERNAL "parse binary: …" (`createBinarySerialization` in
 * `@connectrpc/connect/dist/esm/protocol/serialization.js`), and it does so
 * while reading the request, before any interceptor or handler runs, so no
 * code of ours sees the error. It is the caller's mistake, which gRPC calls
 * INVALID_ARGUMENT (as our fast path does, and as connect-es itself does for
 * undecodable JSON). This wraps a universal handler and rewrites exactly that
 * error in the response, in each protocol's own framing: the Connect unary
 * error body, the Connect end-of-stream message, gRPC trailers and the
 * gRPC-Web trailer frame. The new message does not echo the request.
 */
export function decodeErrorsAsInvalidArgument(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (req: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => {
    const res = await handler(req);
    const type = req.header.get("content-type") ?? "";
    if (type.startsWith("application/grpc-web")) return { ...res, body: mapChunks(res.body, rewriteGrpcWebTrailer) };
    if (type.startsWith("application/grpc")) {
      const trailer = res.trailer;
      if (trailer === undefined) return res;
      rewriteGrpcStatus(trailer);
      return { ...res, body: mapChunks(res.body, (c) => c, () => rewriteGrpcStatus(trailer)) };
    }
    if (type.startsWith("application/connect+")) return { ...res, body: mapChunks(res.body, rewriteConnectEndStream) };
    if (type.startsWith("application/proto") && res.status === 500 && !res.header?.has("content-encoding")) return rewriteConnectUnary(res);
    return res;
  };
  return Object.assign(wrapped, handler);
}

function isParseError(code: string | number | undefined, message: string | undefined): boolean {
  return (code === "internal" || code === Code.Internal || code === String(Code.Internal)) && message !== undefined && message.startsWith("parse binary:");
}

function rewriteGrpcStatus(trailer: Headers): boolean {
  let message: string | undefined;
  try {
    message = decodeURIComponent(trailer.get("grpc-message") ?? "");
  } catch {
    return false;
  }
  if (!isParseError(trailer.get("grpc-status") ?? undefined, message)) return false;
  trailer.set("grpc-status", String(Code.InvalidArgument));
  trailer.set("grpc-message", encodeURIComponent(undecodableMessage));
  trailer.delete("grpc-status-details-bin");
  return true;
}

function rewriteGrpcWebTrailer(chunk: Uint8Array): Uint8Array {
  if (chunk.length < 5 || chunk[0] !== trailerFlag) return chunk;
  const trailer = trailerParse(chunk.subarray(5));
  return rewriteGrpcStatus(trailer) ? encodeEnvelope(trailerFlag, trailerSerialize(trailer)) : chunk;
}

/** The flag of Connect's end-of-stream message. */
const endStreamFlag = 0b00000010;

function rewriteConnectEndStream(chunk: Uint8Array): Uint8Array {
  if (chunk.length < 5 || chunk[0] !== endStreamFlag) return chunk;
  try {
    const end = JSON.parse(new TextDecoder().decode(chunk.subarray(5))) as { error?: { code?: string; message?: string } };
    if (end.error === undefined || !isParseError(end.error.code, end.error.message)) return chunk;
    end.error = { code: "invalid_argument", message: undecodableMessage };
    return encodeEnvelope(endStreamFlag, new TextEncoder().encode(JSON.stringify(end)));
  } catch {
    return chunk;
  }
}

async function rewriteConnectUnary(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const c of (res.body ?? []) as AsyncIterable<Uint8Array>) chunks.push(c);
  const bytes = Buffer.concat(chunks);
  try {
    const err = JSON.parse(bytes.toString("utf8")) as { code?: string; message?: string };
    if (isParseError(err.code, err.message)) {
      const body = errorToJsonBytes(new ConnectError(undecodableMessage, Code.InvalidArgument), {});
      const header = new Headers(res.header);
      header.set("content-length", String(body.byteLength));
      return { ...res, status: codeToHttpStatus(Code.InvalidArgument), header, body: once(body) };
    }
  } catch {
    // Not JSON: leave it alone.
  }
  return { ...res, body: once(bytes) };
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

async function* mapChunks(body: UniversalServerResponse["body"], map: (chunk: Uint8Array) => Uint8Array, done?: () => void): AsyncIterable<Uint8Array> {
  if (body === undefined) {
    done?.();
    return;
  }
  for await (const chunk of body as AsyncIterable<Uint8Array>) yield map(chunk);
  done?.();
}
