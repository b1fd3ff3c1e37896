/** A promise and the function that settles it, for tests that hold one side until the other is ready (Promise.withResolvers, which Node 20 lacks). */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}
