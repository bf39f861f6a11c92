// SPDX-License-Identifier: Apache-2.0
//
// A minimal batch reader for tests, written for this project: it has the ABI of Multicall3's
// aggregate((address,bytes)[]) (same selector, same return encoding), so its runtime code can
// be placed at Multicall3's canonical address on a local anvil chain with anvil_setCode (no
// constructor, no storage) and read by clients written for Multicall3. It does nothing else.
pragma solidity ^0.8.20;

contract Multicall {
    struct Call {
        address target;
        bytes callData;
    }

    /// Call each target with its calldata in order; return the block number and every
    /// call's return data. Any failing call reverts the whole batch (as Multicall3 does).
    function aggregate(Call[] calldata calls)
        external
        payable
        returns (uint256 blockNumber, bytes[] memory returnData)
    {
        blockNumber = block.number;
        uint256 n = calls.length;
        returnData = new bytes[](n);
        for (uint256 i = 0; i < n; i++) {
            (bool ok, bytes memory answer) = calls[i].target.call(calls[i].callData);
            require(ok, "Multicall: a call failed");
            returnData[i] = answer;
        }
    }
}
