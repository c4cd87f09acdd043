// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "MergeKit",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MergeKit", targets: ["MergeKit"]),
        .executable(name: "merge-cli", targets: ["merge-cli"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"4.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // Hugging Face Hub downloads (the library) and the fake hub the tests serve on 127.0.0.1.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", exact: "0.9.20"),
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]
        ),
        .target(
            name: "MergeKit",
            dependencies: [
                "CBLAS",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ]
        ),
        .executableTarget(
            name: "merge-cli",
            dependencies: [
                "MergeKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "benchmark-tool",
            dependencies: ["MergeKit"],
            path: "Benchmarks/Sources/benchmark-tool",
            // A small top-level script; Swift 5 mode spares it the strict-concurrency ceremony.
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .target(
            name: "FuzzSupport",
            path: "Fuzz/Support"
        ),
        .executableTarget(
            name: "header-fuzz",
            dependencies: ["MergeKit", "FuzzSupport"],
            path: "Fuzz/HeaderFuzz"
        ),
        .executableTarget(
            name: "recipe-fuzz",
            dependencies: ["MergeKit", "FuzzSupport"],
            path: "Fuzz/RecipeFuzz"
        ),
        .executableTarget(
            name: "pickle-fuzz",
            dependencies: ["MergeKit", "FuzzSupport"],
            path: "Fuzz/PickleFuzz"
        ),
        .testTarget(
            name: "MergeKitTests",
            dependencies: [
                "MergeKit", "merge-cli", "benchmark-tool", "header-fuzz", "recipe-fuzz", "pickle-fuzz", "FuzzSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ]
        ),
    ]
)
