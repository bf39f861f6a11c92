// SPDX-License-Identifier: Apache-2.0
//
// A stand-in for Hypermap in tests: it emits exactly Hypermap's Mint, Note and Fact events
// (same signatures, so the same topic0 values) and nothing else. Its runtime code is placed
// at the real Hypermap address on a local anvil chain with anvil_setCode, so no constructor
// runs and the contract keeps no storage. Not a model of Hypermap's ownership rules: tests
// want to write any history, including malformed or out-of-order ones.
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

    /// The entry hash Hypermap derives: keccak256(parenthash || keccak256(label)).
    function _child(bytes32 parenthash, bytes calldata label) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(parenthash, keccak256(label)));
    }

    function mint(bytes32 parenthash, bytes calldata label) external {
        emit Mint(parenthash, _child(parenthash, label), label, label);
    }

    function note(bytes32 parenthash, bytes calldata label, bytes calldata data) external {
        emit Note(parenthash, _child(parenthash, label), label, label, data);
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
                emit Mint(parents[i], child, labels[i], labels[i]);
            } else if (kinds[i] == KIND_NOTE) {
                emit Note(parents[i], child, labels[i], labels[i], datas[i]);
            } else if (kinds[i] == KIND_FACT) {
                emit Fact(parents[i], child, labels[i], labels[i], datas[i]);
            } else {
                revert("kind");
            }
        }
    }
}
