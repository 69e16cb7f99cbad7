import PrimaKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Copies byte ranges between files in the kernel (`copy_file_range`, as `cp` does), so converting a
/// checkpoint moves tensor bytes without passing them through user memory; falls back to `pwrite` from a
/// caller-supplied buffer holding the same bytes where the kernel cannot (other filesystems, old kernels).
public enum FileRangeCopy {
    /// The result of a failed copy: the `errno` text.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Copies `count` bytes at `sourceOffset` of `source` to `destinationOffset` of `destination`.
    /// `sameBytes`, if given, holds those bytes already (used by the fallback instead of re-reading).
    public static func copy(from source: Int32, at sourceOffset: Int, to destination: Int32, at destinationOffset: Int,
                            count: Int, sameBytes: UnsafeRawBufferPointer? = nil) throws(Failure) {
        var input = Int64(sourceOffset), output = Int64(destinationOffset)
        var remaining = count
        while remaining > 0 {
            let copied = prima_copy_file_range(source, &input, destination, &output, remaining)
            if copied > 0 {
                remaining -= copied
                continue
            }
            if copied < 0 && errno == EINTR { continue }
            if copied == 0 { throw Failure(description: "source ended \(remaining) bytes early") }
            guard [EXDEV, ENOSYS, EOPNOTSUPP, EINVAL, EBADF].contains(errno) else {
                throw Failure(description: String(cString: strerror(errno)))
            }
            break  // the kernel cannot copy between these files: fall back below
        }
        guard remaining > 0 else { return }
        let done = count - remaining
        if let sameBytes {
            try write(UnsafeRawBufferPointer(rebasing: sameBytes[done..<count]), to: destination, at: destinationOffset + done)
            return
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(remaining, 8 << 20), alignment: 64)
        defer { buffer.deallocate() }
        var position = done
        while position < count {
            let step = min(buffer.count, count - position)
            var got = 0
            while got < step {
                let n = pread(source, buffer.baseAddress! + got, step - got, off_t(sourceOffset + position + got))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw Failure(description: n == 0 ? "source ended early" : String(cString: strerror(errno))) }
                got += n
            }
            try write(UnsafeRawBufferPointer(rebasing: buffer[0..<step]), to: destination, at: destinationOffset + position)
            position += step
        }
    }

    /// `pwrite` of all of `bytes` at `offset`, retrying short writes and EINTR.
    public static func write(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32, at offset: Int) throws(Failure) {
        var written = 0
        while written < bytes.count {
            let n = pwrite(descriptor, bytes.baseAddress! + written, bytes.count - written, off_t(offset + written))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failure(description: String(cString: strerror(errno))) }
            written += n
        }
    }
}
