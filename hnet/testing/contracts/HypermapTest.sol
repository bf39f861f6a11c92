// SPDX-License-Identifier: Apache-2.0
//
// A stand-in for Hypermap in tests: it emits exactly Hypermap's Mint, Note and Fact events
// (same signatures, so the same topic0 values) and nothing else, and answers Hypermap's
// get(bytes32) from what it was told: a minted entry's (tba, owner), the latest value of a
// note or fact. Its runtime code is placed at the real Hypermap address on a local anvil chain
// with anvil_setCode, so no constructor runs: all state starts empty (storage writes work
// without one). Not a model of Hypermap's ownership rules: tests want to write any history,
// including malformed or out-of-order ones (a note before its entry's Mint is stored too).
pragma solidity ^0.8.20;

contract HypermapTest {
    event Mint(
        bytes32 indexed parenthash,
        bytes32 indexed childhash,
        bytes indexed labelhash,
        bytes label
    );
    event Note(
        bytes32 indexed parenthash,
        bytes32 indexed notehash,
        bytes indexed labelhash,
        bytes label,
        bytes data
    );
    event Fact(
        bytes32 indexed parenthash,
        bytes32 indexed facthash,
        bytes indexed labelhash,
        bytes label,
        bytes data
    );

    uint8 internal constant KIND_MINT = 0;
    uint8 internal constant KIND_NOTE = 1;
    uint8 internal constant KIND_FACT = 2;

    /// Owner of each minted entry (the one who sent its Mint). One slot per Mint: the entry's
    /// token-bound account is derived from its hash when read (see _tba), not stored.
    mapping(bytes32 => address) internal owners;
    /// Latest value of each note or fact, by its hash.
    mapping(bytes32 => bytes) internal values;

    /// The entry hash Hypermap derives: keccak256(parenthash || keccak256(label)).
    function _child(bytes32 parenthash, bytes calldata label) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(parenthash, keccak256(label)));
    }

    /// A stand-in token-bound account address for an entry: non-zero, derived from its hash.
    function _tba(bytes32 entry) internal pure returns (address) {
        address a = address(uint160(uint256(keccak256(abi.encodePacked("tba", entry)))));
        return a == address(0) ? address(1) : a;
    }

    /// Hypermap's reader: (tba, owner, data) of an entry, note or fact; all zero/empty for a
    /// hash never written. A minted entry has a non-zero tba and owner and no data; a note or
    /// fact has a zero tba and owner and its latest value.
    function get(bytes32 namehash)
        external
        view
        returns (address tba, address owner, bytes memory data)
    {
        owner = owners[namehash];
        if (owner != address(0)) {
            tba = _tba(namehash);
        }
        data = values[namehash];
    }

    function _mint(bytes32 parenthash, bytes32 child, bytes calldata label) internal {
        owners[child] = msg.sender;
        emit Mint(parenthash, child, label, label);
    }

    function _note(bytes32 parenthash, bytes32 child, bytes calldata label, bytes calldata data)
        internal
    {
        values[child] = data;
        emit Note(parenthash, child, label, label, data);
    }

    function _fact(bytes32 parenthash, bytes32 child, bytes calldata label, bytes calldata data)
        internal
    {
        values[child] = data;
        emit Fact(parenthash, child, label, label, data);
    }

    function mint(bytes32 parenthash, bytes calldata label) external {
        _mint(parenthash, _child(parenthash, label), label);
    }

    function note(bytes32 parenthash, bytes calldata label, bytes calldata data) external {
        _note(parenthash, _child(parenthash, label), label, data);
    }

    function fact(bytes32 parenthash, bytes calldata label, bytes calldata data) external {
        _fact(parenthash, _child(parenthash, label), label, data);
    }

    /// Many events in one transaction (tests mine thousands of logs in few blocks).
    /// kinds[i]: 0 Mint, 1 Note, 2 Fact; datas[i] is ignored for a Mint.
    function batch(
        uint8[] calldata kinds,
        bytes32[] calldata parents,
        bytes[] calldata labels,
        bytes[] calldata datas
    ) external {
        uint256 n = kinds.length;
        require(parents.length == n && labels.length == n && datas.length == n, "lengths");
        for (uint256 i = 0; i < n; i++) {
            bytes32 child = _child(parents[i], labels[i]);
            if (kinds[i] == KIND_MINT) {
                _mint(parents[i], child, labels[i]);
            } else if (kinds[i] == KIND_NOTE) {
                _note(parents[i], child, labels[i], datas[i]);
            } else if (kinds[i] == KIND_FACT) {
                _fact(parents[i], child, labels[i], datas[i]);
            } else {
                revert("kind");
            }
        }
    }
}
