import { toBinary, type DescExtension, type DescFile, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { reflectionV1, reflectionV1alpha } from "@bulwark/contracts";

type Request = reflectionV1.ServerReflectionRequest;
type Response = reflectionV1.ServerReflectionResponse;

/**
 * Answers gRPC server reflection from the embedded descriptors of the
 * services a server hosts, so `buf curl` and grpcurl work with no schema
 * flag. Each answer carries the file and all of its transitive imports.
 */
export class ReflectionIndex {
  readonly #files = new Map<string, DescFile>();
  readonly #symbols = new Map<string, DescFile>();
  readonly #extensions = new Map<string, DescFile>();
  readonly #extensionNumbers = new Map<string, number[]>();
  readonly #serviceNames: string[];

  constructor(files: Iterable<DescFile>, serviceNames: string[]) {
    this.#serviceNames = serviceNames;
    for (const f of files) this.#add(f);
  }

  #add(file: DescFile): void {
    if (this.#files.has(file.proto.name)) return;
    this.#files.set(file.proto.name, file);
    for (const dep of file.dependencies) this.#add(dep);
    const addMessage = (m: DescFile["messages"][number]): void => {
      this.#symbols.set(m.typeName, file);
      for (const f of m.fields) this.#symbols.set(`${m.typeName}.${f.name}`, file);
      for (const e of m.nestedEnums) this.#symbols.set(e.typeName, file);
      for (const n of m.nestedMessages) addMessage(n);
    };
    for (const m of file.messages) addMessage(m);
    for (const e of file.enums) this.#symbols.set(e.typeName, file);
    for (const s of file.services) {
      this.#symbols.set(s.typeName, file);
      for (const m of s.methods) this.#symbols.set(`${s.typeName}.${m.name}`, file);
    }
    const addExtension = (x: DescExtension): void => {
      this.#symbols.set(x.typeName, file);
      this.#extensions.set(`${x.extendee.typeName}:${x.number}`, file);
      const numbers = this.#extensionNumbers.get(x.extendee.typeName) ?? [];
      numbers.push(x.number);
      this.#extensionNumbers.set(x.extendee.typeName, numbers);
    };
    for (const x of file.extensions) addExtension(x);
    const nested = (m: DescMessage): void => {
      for (const x of m.nestedExtensions) addExtension(x);
      for (const n of m.nestedMessages) nested(n);
    };
    for (const m of file.messages) nested(m);
  }

  /** The serialized descriptors of a file and its transitive imports. */
  #closure(file: DescFile): Uint8Array[] {
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (f: DescFile): void => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      for (const d of f.dependencies) visit(d);
    };
    visit(file);
    return out;
  }

  answer(req: Request): Response["messageResponse"] {
    const notFound = (what: string): Response["messageResponse"] => ({ case: "errorResponse", value: { errorCode: 5, errorMessage: `${what} not found` } as never });
    switch (req.messageRequest.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: this.#serviceNames.map((name) => ({ name })) } as never };
      case "fileByFilename": {
        const f = this.#files.get(req.messageRequest.value);
        return f === undefined ? notFound("file") : { case: "fileDescriptorResponse", value: { fileDescriptorProto: this.#closure(f) } as never };
      }
      case "fileContainingSymbol": {
        const f = this.#symbols.get(req.messageRequest.value.replace(/^\./, ""));
        return f === undefined ? notFound("symbol") : { case: "fileDescriptorResponse", value: { fileDescriptorProto: this.#closure(f) } as never };
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = req.messageRequest.value;
        const f = this.#extensions.get(`${containingType.replace(/^\./, "")}:${extensionNumber}`);
        return f === undefined ? notFound("extension") : { case: "fileDescriptorResponse", value: { fileDescriptorProto: this.#closure(f) } as never };
      }
      case "allExtensionNumbersOfType": {
        const type = req.messageRequest.value.replace(/^\./, "");
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: type, extensionNumber: [...(this.#extensionNumbers.get(type) ?? [])].sort((a, b) => a - b) } as never };
      }
      default:
        return { case: "errorResponse", value: { errorCode: 3, errorMessage: "unsupported reflection request" } as never };
    }
  }
}

/** grpc.reflection.v1.ServerReflection over an index. */
export function reflectionServiceV1(index: ReflectionIndex): ServiceImpl<typeof reflectionV1.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req) };
      }
    },
  };
}

/** grpc.reflection.v1alpha.ServerReflection (same messages, older name). */
export function reflectionServiceV1alpha(index: ReflectionIndex): ServiceImpl<typeof reflectionV1alpha.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req as unknown as Request) as never };
      }
    },
  };
}
