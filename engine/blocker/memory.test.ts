import { describeObjectStoreConformance } from "./conformance.ts";
import { MemoryObjectStore } from "./memory.ts";

describeObjectStoreConformance("memory", async () => ({ store: new MemoryObjectStore(), cleanup: async () => {} }));
